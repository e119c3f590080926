// ClassifyZeroShot, one review and LABELS candidate labels per request, at a constant arrival rate.
//   k6 run -e TARGET=127.0.0.1:50051 -e RATE=100 -e LABELS=10 loadtest/k6/zeroshot.js
import grpc from 'k6/net/grpc';
import { check } from 'k6';
import exec from 'k6/execution';
import { client, connect, record, textFor, failures } from './lib.js';

const ALL_LABELS = ['物流', '质量', '价格', '服务', '包装', '外观', '尺寸', '颜色', '味道', '电池',
  '屏幕', '声音', '安装', '售后', '做工', '材质', '性能', '气味', '配件', '发票'];
const LABELS = ALL_LABELS.slice(0, Number(__ENV.LABELS || 5));

export const options = {
  scenarios: {
    zeroshot: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 50),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 64),
      maxVUs: Number(__ENV.MAX_VUS || 256),
    },
  },
  thresholds: { senti_failures: ['count==0'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  connect();
  const response = client.invoke('senti.v1.SentiService/ClassifyZeroShot',
    { texts: [textFor(exec.scenario.iterationInTest)], labels: LABELS }, { timeout: '10s' });
  const ok = check(response, { 'status OK': (r) => r && r.status === grpc.StatusOK });
  if (!ok) { failures.add(1); return; }
  record(response.message.metadata);
}

