// Shared helpers of the k6 scripts: texts, the gRPC client, and the server-timing metrics.
import grpc from 'k6/net/grpc';
import { SharedArray } from 'k6/data';
import { Trend, Counter } from 'k6/metrics';

export const TARGET = __ENV.TARGET || '127.0.0.1:50051';
// Real reviews: `python -m loadtest.bench --export-texts loadtest/results/texts.json` writes them.
export const texts = new SharedArray('texts', () => JSON.parse(open(__ENV.TEXTS || '../results/texts.json')));

// Server-side timing from the response metadata (microseconds in the message, milliseconds here).
export const queueMs = new Trend('senti_queue_ms', true);
export const inferenceMs = new Trend('senti_inference_ms', true);
export const serverMs = new Trend('senti_server_total_ms', true);
export const batchSize = new Trend('senti_batch_size');
export const failures = new Counter('senti_failures');

export const client = new grpc.Client();
let connected = false;

export function connect() {
  if (!connected) {
    // the server has reflection on, so no .proto files are needed
    client.connect(TARGET, { plaintext: true, reflect: true, timeout: '10s' });
    connected = true;
  }
}

// protojson writes uint64 as strings and uses lowerCamelCase names
export function record(metadata) {
  if (!metadata) return;
  queueMs.add(Number(metadata.queueUs || 0) / 1000);
  inferenceMs.add(Number(metadata.inferenceUs || 0) / 1000);
  serverMs.add(Number(metadata.totalUs || 0) / 1000);
  batchSize.add(Number(metadata.batchSize || 0));
}

// Each VU walks the texts from its own offset, so no text repeats until the list is exhausted.
export function textFor(iteration) {
  return texts[(iteration * 7919 + (__VU - 1) * 104729) % texts.length];
}
