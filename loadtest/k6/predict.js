// Predict, one review per request, at a constant arrival rate (open loop: k6 starts iterations on schedule
// whether or not earlier ones finished, so a slow server shows up as latency, not as fewer requests).
//   k6 run -e TARGET=127.0.0.1:50051 -e RATE=200 -e DURATION=30s loadtest/k6/predict.js
//   k6 run --summary-export loadtest/results/k6-predict.json ...   (machine-readable summary)
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import exec from 'k6/execution';
import { client, connect, record, textFor, failures } from './lib.js';

const RATE = Number(__ENV.RATE || 100);

export const options = {
  discardResponseBodies: false,
  scenarios: {
    predict: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 64),
      maxVUs: Number(__ENV.MAX_VUS || 256),
    },
  },
  thresholds: {
    grpc_req_duration: [`p(99)<${__ENV.P99_MS || 500}`],
    senti_failures: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  connect();
  const response = client.invoke('senti.v1.SentiService/Predict',
    { texts: [textFor(exec.scenario.iterationInTest)] }, { timeout: '10s' });
  const ok = check(response, { 'status OK': (r) => r && r.status === grpc.StatusOK });
  if (!ok) { failures.add(1); return; }
  record(response.message.metadata);
}

