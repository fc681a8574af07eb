import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Swarmkeep } from '../dist/nodes/Swarmkeep/Swarmkeep.node.js';
import { SwarmkeepTrigger } from '../dist/nodes/SwarmkeepTrigger/SwarmkeepTrigger.node.js';
import { signWebhook, verifyWebhook } from '../dist/nodes/shared/signature.js';
import { job, webhookContext } from './fakes.mts';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** Standard Webhooks headers for `body`, signed now (or `age` seconds ago). */
function signedHeaders(body: string, { secret = SECRET, age = 0 } = {}) {
	const timestamp = String(Math.floor(Date.now() / 1000) - age);
	return {
		'webhook-id': 'msg_1',
		'webhook-timestamp': timestamp,
		'webhook-signature': signWebhook(secret, 'msg_1', timestamp, body),
	};
}

function event(type: string, data = job({ status: 'succeeded' })) {
	return { type, timestamp: '2026-01-01T00:01:00Z', data };
}

describe('Standard Webhooks signature', () => {
	it('matches the reference test vector', () => {
		const body = '{"test": 2432232314}';
		const headers = {
			'webhook-id': 'msg_p5jXN8AQM9LWM0D4loKWxJek',
			'webhook-timestamp': '1614265330',
			'webhook-signature': 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=',
		};
		assert.equal(
			signWebhook(SECRET, headers['webhook-id'], headers['webhook-timestamp'], body),
			headers['webhook-signature'],
		);
		assert.equal(verifyWebhook(SECRET, headers, body, 1614265330 + 10), undefined);
		// Several signatures (key rotation): one match is enough.
		const rotated = {
			...headers,
			'webhook-signature': `v1,bm90LWl0 ${headers['webhook-signature']}`,
		};
		assert.equal(verifyWebhook(SECRET, rotated, body, 1614265330), undefined);
	});

	it('rejects a changed body, a wrong secret, stale timestamps and missing headers', () => {
		const body = '{"type":"job.succeeded"}';
		const headers = signedHeaders(body);
		assert.equal(verifyWebhook(SECRET, headers, body), undefined);
		assert.match(verifyWebhook(SECRET, headers, body + ' ') ?? '', /does not match/);
		assert.match(verifyWebhook('whsec_b3RoZXItc2VjcmV0', headers, body) ?? '', /does not match/);
		assert.match(verifyWebhook(SECRET, signedHeaders(body, { age: 301 }), body) ?? '', /stale/);
		assert.match(verifyWebhook(SECRET, signedHeaders(body, { age: -301 }), body) ?? '', /stale/);
		assert.equal(verifyWebhook(SECRET, signedHeaders(body, { age: 299 }), body), undefined);
		assert.match(verifyWebhook(SECRET, { 'webhook-id': 'x' }, body) ?? '', /missing/);
	});
});

describe('Swarmkeep resume webhook', () => {
	const node = new Swarmkeep();

	it('resumes with the job from a correctly signed completion callback', async () => {
		const body = event('job.succeeded');
		const raw = JSON.stringify(body);
		const { context } = webhookContext({
			body,
			rawBody: raw,
			headers: signedHeaders(raw),
			webhookSecret: SECRET,
		});
		const answer = await node.webhook.call(context);
		assert.deepEqual(answer.workflowData, [[{ json: body.data, pairedItem: { item: 0 } }]]);
		assert.deepEqual(answer.webhookResponse, { received: true, resumed: true });
	});

	it('verifies the raw bytes, not a re-serialisation of the parsed body', async () => {
		const body = event('job.failed', job({ status: 'failed' }));
		const raw = JSON.stringify(body, null, 2);
		const { context } = webhookContext({
			body,
			rawBody: raw,
			headers: signedHeaders(raw),
			webhookSecret: SECRET,
		});
		const answer = await node.webhook.call(context);
		assert.equal(answer.workflowData?.[0][0].json.status, 'failed');
	});

	it('answers 401 and keeps waiting when the signature is wrong', async () => {
		const body = event('job.succeeded');
		const raw = JSON.stringify(body);
		const { context, response } = webhookContext({
			body,
			rawBody: raw,
			headers: signedHeaders(raw, { secret: 'whsec_b3RoZXItc2VjcmV0' }),
			webhookSecret: SECRET,
		});
		const answer = await node.webhook.call(context);
		assert.deepEqual(answer, { noWebhookResponse: true });
		assert.equal(response.status, 401);
		assert.match((response.body as { detail: string }).detail, /signature does not match/);
	});

	it('keeps waiting through progress events', async () => {
		const { context } = webhookContext({
			body: { type: 'subtask.finished', data: { subtask_id: 's1' } },
		});
		const answer = await node.webhook.call(context);
		assert.equal(answer.workflowData, undefined);
		assert.deepEqual(answer.webhookResponse, { received: true, resumed: false });
	});

	it('accepts unsigned callbacks when the credential has no webhook secret', async () => {
		const body = event('job.canceled', job({ status: 'canceled' }));
		const { context } = webhookContext({ body });
		const answer = await node.webhook.call(context);
		assert.equal(answer.workflowData?.[0][0].json.status, 'canceled');
	});
});

describe('Swarmkeep Trigger', () => {
	const trigger = new SwarmkeepTrigger();
	const parameters = { events: ['job.succeeded', 'job.failed'], verifySignature: true };

	it('starts the workflow with the whole event when it is selected and signed', async () => {
		const body = event('job.succeeded');
		const raw = JSON.stringify(body);
		const { context } = webhookContext({
			parameters,
			body,
			rawBody: raw,
			headers: signedHeaders(raw),
			webhookSecret: SECRET,
		});
		const answer = await trigger.webhook.call(context);
		assert.deepEqual(answer.workflowData, [[{ json: body }]]);
		assert.deepEqual(answer.webhookResponse, { received: true, type: 'job.succeeded' });
	});

	it('acknowledges and drops events that are not selected', async () => {
		const body = event('job.canceled');
		const raw = JSON.stringify(body);
		const { context } = webhookContext({
			parameters,
			body,
			rawBody: raw,
			headers: signedHeaders(raw),
			webhookSecret: SECRET,
		});
		const answer = await trigger.webhook.call(context);
		assert.equal(answer.workflowData, undefined);
		assert.deepEqual(answer.webhookResponse, { received: true, ignored: 'job.canceled' });
	});

	it('rejects stale callbacks', async () => {
		const body = event('job.succeeded');
		const raw = JSON.stringify(body);
		const { context, response } = webhookContext({
			parameters,
			body,
			rawBody: raw,
			headers: signedHeaders(raw, { age: 600 }),
			webhookSecret: SECRET,
		});
		const answer = await trigger.webhook.call(context);
		assert.deepEqual(answer, { noWebhookResponse: true });
		assert.equal(response.status, 401);
		assert.match((response.body as { detail: string }).detail, /stale/);
	});

	it('rejects everything when it must verify but the credential has no secret', async () => {
		const { context, response } = webhookContext({ parameters, body: event('job.succeeded') });
		await trigger.webhook.call(context);
		assert.equal(response.status, 401);
		assert.match((response.body as { detail: string }).detail, /no webhook secret/);
	});

	it('accepts unsigned callbacks when Verify Signature is off', async () => {
		const { context } = webhookContext({
			parameters: { ...parameters, verifySignature: false },
			body: event('job.failed'),
		});
		const answer = await trigger.webhook.call(context);
		assert.equal(answer.workflowData?.[0][0].json.type, 'job.failed');
	});
});
