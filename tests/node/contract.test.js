// Cross-language contract: a Node client (@grpc/grpc-js + @grpc/proto-loader) against a running senti server.
// SENTI_TARGET=host:port HEALTH_PROTO=/path/to/health.proto node --test contract.test.js
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ROOT = path.resolve(__dirname, '..', '..');
const TARGET = process.env.SENTI_TARGET;
const OPTIONS = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

function load(file, includeDirs) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, { ...OPTIONS, includeDirs }));
}

const senti = load('senti/v1/senti.proto', [path.join(ROOT, 'protos'), path.join(ROOT, 'third_party', 'googleapis')]).senti.v1;
const healthPkg = load(path.basename(process.env.HEALTH_PROTO), [path.dirname(process.env.HEALTH_PROTO)]).grpc.health.v1;
const client = new senti.SentiService(TARGET, grpc.credentials.createInsecure());
const health = new healthPkg.Health(TARGET, grpc.credentials.createInsecure());
const deadline = () => ({ deadline: Date.now() + 30000 });
const call = (stub, method, request) => new Promise((resolve, reject) =>
  stub[method](request, deadline(), (error, response) => (error ? reject(error) : resolve(response))));

test('health reports SERVING', async () => {
  const response = await call(health, 'Check', { service: '' });
  assert.strictEqual(response.status, 'SERVING');
  const named = await call(health, 'Check', { service: 'senti.v1.SentiService' });
  assert.strictEqual(named.status, 'SERVING');
});

test('Predict answers each text in order with scores that sum to 1', async () => {
  const response = await call(client, 'Predict', { texts: ['这家餐厅太难吃了', '服务很贴心'] });
  assert.strictEqual(response.predictions.length, 2);
  for (const p of response.predictions) {
    assert.ok(['negative', 'positive'].includes(p.label));
    assert.ok(['POLARITY_NEGATIVE', 'POLARITY_POSITIVE'].includes(p.polarity));
    const sum = p.scores.reduce((acc, s) => acc + s.score, 0);
    assert.ok(Math.abs(sum - 1) < 1e-4, `scores sum to ${sum}`);
    assert.ok(p.tokens > 2);
  }
  assert.ok(response.metadata.totalUs > 0);
});

test('Predict with no texts is INVALID_ARGUMENT with a readable message', async () => {
  await assert.rejects(call(client, 'Predict', { texts: [] }), (error) => {
    assert.strictEqual(error.code, grpc.status.INVALID_ARGUMENT);
    assert.match(error.details, /texts is empty/);
    return true;
  });
});

test('PredictStream answers every id once, a bad item with a google.rpc.Status', async () => {
  const stream = client.PredictStream(deadline());
  const answers = [];
  const done = new Promise((resolve, reject) => {
    stream.on('data', (r) => answers.push(r));
    stream.on('error', reject);
    stream.on('end', resolve);
  });
  const items = [['a', '物流很快'], ['b', '   '], ['c', '包装破损，很失望'], ['d', '😀 好评']];
  for (const [id, text] of items) stream.write({ id, text });
  stream.end();
  await done;
  assert.deepStrictEqual(answers.map((r) => r.id).sort(), ['a', 'b', 'c', 'd']);
  const bad = answers.find((r) => r.id === 'b');
  assert.strictEqual(bad.result, 'error');
  assert.strictEqual(bad.error.code, grpc.status.INVALID_ARGUMENT);
  for (const r of answers.filter((x) => x.id !== 'b')) {
    assert.strictEqual(r.result, 'prediction');
    assert.ok(['negative', 'positive'].includes(r.prediction.label));
  }
});

test('ClassifyZeroShot returns every label, highest score first', async () => {
  const labels = ['体育', '财经', '科技'];
  const response = await call(client, 'ClassifyZeroShot', {
    texts: ['国足三比零战胜对手'], labels, hypothesisTemplate: '这是一条关于{}的新闻', multiLabel: false });
  const [result] = response.results;
  assert.deepStrictEqual(result.labels.map((l) => l.label).sort(), [...labels].sort());
  const scores = result.labels.map((l) => l.score);
  assert.deepStrictEqual(scores, [...scores].sort((x, y) => y - x));
});

test('GetModelInfo reports the limits', async () => {
  const info = await call(client, 'GetModelInfo', {});
  assert.ok(info.models.length >= 1);
  assert.ok(info.limits.maxTextsPerRequest > 0);
});

test.after(() => { client.close(); health.close(); });
