import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { runSwarm } from '../dist/nodes/Swarmkeep/runSwarm.js';
import { executeContext, job, workflow } from './fakes.mts';

const { NodeApiError, NodeOperationError, WAIT_INDEFINITELY } = workflow;

const base = { task: 'write a haiku', waitMode: 'none', maxWaitMinutes: 60, options: {} };

describe('Run Swarm', () => {
	it("submits the task and returns the queued job with Don't Wait", async () => {
		const { context, calls } = executeContext({
			parameters: {
				...base,
				options: {
					maxParallel: 16,
					metadata: '{"source": "n8n"}',
					idempotencyKey: 'order-42',
					callbackUrl: 'https://n8n.example/webhook/x/swarmkeep',
				},
			},
			answers: [{ status: 202, body: job() }],
		});
		const [output] = await runSwarm.call(context);
		assert.equal(calls.length, 1);
		const { credentialType, request } = calls[0];
		assert.equal(credentialType, 'swarmkeepApi');
		assert.equal(request.method, 'POST');
		assert.equal(request.baseURL, 'http://swarm.test:8080');
		assert.equal(request.url, '/v1/jobs');
		assert.deepEqual(request.body, {
			task: 'write a haiku',
			max_parallel: 16,
			metadata: { source: 'n8n' },
			callback_url: 'https://n8n.example/webhook/x/swarmkeep',
		});
		assert.equal((request.headers as Record<string, string>)['Idempotency-Key'], 'order-42');
		assert.deepEqual(output, [{ json: job(), pairedItem: { item: 0 } }]);
	});

	it('sends only the task when no option is set', async () => {
		const { context, calls } = executeContext({
			parameters: base,
			answers: [{ status: 202, body: job() }],
		});
		await runSwarm.call(context);
		assert.deepEqual(calls[0].request.body, { task: 'write a haiku' });
		assert.equal(
			(calls[0].request.headers as Record<string, string>)['Idempotency-Key'],
			undefined,
		);
	});

	it('sends Human Subtasks and Allow Humans In Plan', async () => {
		const { context, calls } = executeContext({
			parameters: {
				...base,
				options: {
					allowHumans: true,
					humanSubtasks: {
						subtask: [
							{ id: ' legal_review ', instruction: 'Check the liability caps' },
							{ id: 'sign_off', instruction: 'Approve the final brief' },
						],
					},
				},
			},
			answers: [{ status: 202, body: job() }],
		});
		await runSwarm.call(context);
		assert.deepEqual(calls[0].request.body, {
			task: 'write a haiku',
			human_subtasks: [
				{ id: 'legal_review', instruction: 'Check the liability caps' },
				{ id: 'sign_off', instruction: 'Approve the final brief' },
			],
			allow_humans: true,
		});
	});

	it('leaves out allow_humans when off and human_subtasks when empty', async () => {
		const { context, calls } = executeContext({
			parameters: { ...base, options: { allowHumans: false, humanSubtasks: {} } },
			answers: [{ status: 202, body: job() }],
		});
		await runSwarm.call(context);
		assert.deepEqual(calls[0].request.body, { task: 'write a haiku' });
	});

	it('refuses a Human Subtask without an ID or instruction', async () => {
		const { context, calls } = executeContext({
			parameters: {
				...base,
				options: {
					humanSubtasks: {
						subtask: [
							{ id: 'a', instruction: 'do it' },
							{ id: 'b', instruction: ' ' },
						],
					},
				},
			},
		});
		await assert.rejects(runSwarm.call(context), (error: Error) => {
			assert.ok(error instanceof NodeOperationError);
			assert.match(error.message, /Human Subtask 2 needs both an ID and an instruction/);
			return true;
		});
		assert.equal(calls.length, 0);
	});

	it('rejects metadata that is not a JSON object', async () => {
		const { context } = executeContext({
			parameters: { ...base, options: { metadata: '[1, 2]' } },
		});
		await assert.rejects(runSwarm.call(context), (error: Error) => {
			assert.ok(error instanceof NodeOperationError);
			assert.match(error.message, /must be a JSON object/);
			return true;
		});
	});

	it('long-polls /wait until the job is terminal with Poll Until Done', async () => {
		const { context, calls } = executeContext({
			parameters: { ...base, waitMode: 'poll', maxWaitMinutes: 10 },
			answers: [
				{ status: 202, body: job() },
				{ status: 200, body: job({ status: 'running' }) },
				{
					status: 200,
					body: job({ status: 'succeeded', result: { synthesis: 'done', subtasks: [] } }),
				},
			],
		});
		const [output] = await runSwarm.call(context);
		assert.deepEqual(
			calls.map((call) => `${call.request.method} ${call.request.url}`),
			['POST /v1/jobs', 'GET /v1/jobs/job-1/wait', 'GET /v1/jobs/job-1/wait'],
		);
		const timeout = calls[1].request.qs?.timeout as number;
		assert.ok(timeout >= 1 && timeout <= 60, `long poll timeout ${timeout} s`);
		assert.ok(
			(calls[1].request.timeout as number) > timeout * 1000,
			'request outlives the long poll',
		);
		assert.equal(output.length, 1);
		assert.equal(output[0].json.status, 'succeeded');
		assert.deepEqual(output[0].json.result, { synthesis: 'done', subtasks: [] });
	});

	it('submits every item before waiting, and keeps item order', async () => {
		const tasks = ['first', 'second'];
		const { context, calls } = executeContext({
			items: [{ json: {} }, { json: {} }],
			parameters: { ...base, task: (i: number) => tasks[i], waitMode: 'poll' },
			answers: [
				(request) => ({
					status: 202,
					body: job({ id: 'a', task: (request.body as { task: string }).task }),
				}),
				(request) => ({
					status: 202,
					body: job({ id: 'b', task: (request.body as { task: string }).task }),
				}),
				{ status: 200, body: job({ id: 'a', status: 'succeeded' }) },
				{ status: 200, body: job({ id: 'b', status: 'failed', error: 'planner gave up' }) },
			],
		});
		const [output] = await runSwarm.call(context);
		assert.deepEqual(
			calls.map((call) => `${call.request.method} ${call.request.url}`),
			['POST /v1/jobs', 'POST /v1/jobs', 'GET /v1/jobs/a/wait', 'GET /v1/jobs/b/wait'],
		);
		assert.deepEqual(
			output.map((item) => [item.json.id, item.json.status, item.pairedItem]),
			[
				['a', 'succeeded', { item: 0 }],
				['b', 'failed', { item: 1 }],
			],
		);
	});

	it('fails the item when the job outlasts Max Wait', async () => {
		const { context } = executeContext({
			parameters: { ...base, waitMode: 'poll', maxWaitMinutes: 0 },
			answers: [{ status: 202, body: job({ status: 'running' }) }],
		});
		await assert.rejects(runSwarm.call(context), (error: Error) => {
			assert.ok(error instanceof NodeOperationError);
			assert.match(error.message, /Job job-1 is still running after 0 min/);
			return true;
		});
	});

	it("surfaces the API's 422 detail, or records it per item with Continue On Fail", async () => {
		const invalid = {
			status: 422,
			body: {
				detail: [
					{ loc: ['body', 'max_parallel'], msg: 'Input should be less than or equal to 300' },
				],
			},
		};
		const failing = executeContext({ parameters: base, answers: [invalid] });
		await assert.rejects(runSwarm.call(failing.context), (error: Error) => {
			assert.ok(error instanceof NodeApiError);
			assert.equal(
				error.message,
				'Swarmkeep API answered 422: body.max_parallel: Input should be less than or equal to 300',
			);
			assert.equal(error.httpCode, '422');
			return true;
		});

		const tolerant = executeContext({
			items: [{ json: {} }, { json: {} }],
			parameters: base,
			continueOnFail: true,
			answers: [invalid, { status: 202, body: job({ id: 'b' }) }],
		});
		const [output] = await runSwarm.call(tolerant.context);
		assert.deepEqual(output[0], {
			json: {
				error:
					'Swarmkeep API answered 422: body.max_parallel: Input should be less than or equal to 300',
			},
			pairedItem: { item: 0 },
		});
		assert.equal(output[1].json.id, 'b');
	});

	it('submits with the resume URL and puts the execution to wait with Resume on Callback', async () => {
		const resumeUrl = 'http://127.0.0.1:5678/webhook-waiting/7?signature=tok';
		const { context, calls, waits } = executeContext({
			parameters: { ...base, waitMode: 'callback', maxWaitMinutes: 0 },
			resumeUrl,
			answers: [{ status: 202, body: job() }],
		});
		const [output] = await runSwarm.call(context);
		assert.equal((calls[0].request.body as { callback_url: string }).callback_url, resumeUrl);
		assert.deepEqual(waits, [WAIT_INDEFINITELY]);
		assert.equal(output[0].json.id, 'job-1');
	});

	it('limits the callback wait to Max Wait', async () => {
		const { context, waits } = executeContext({
			parameters: { ...base, waitMode: 'callback', maxWaitMinutes: 2 },
			resumeUrl: 'http://n8n.test/webhook-waiting/7',
			answers: [{ status: 202, body: job() }],
		});
		const before = Date.now();
		await runSwarm.call(context);
		const waitMs = waits[0].getTime() - before;
		assert.ok(waitMs > 119_000 && waitMs < 121_000, `waits ${waitMs} ms`);
	});

	it('refuses Resume on Callback for more than one item', async () => {
		const { context, calls } = executeContext({
			items: [{ json: {} }, { json: {} }],
			parameters: { ...base, waitMode: 'callback' },
		});
		await assert.rejects(runSwarm.call(context), /one job per execution, but got 2 items/);
		assert.equal(calls.length, 0);
	});
});
