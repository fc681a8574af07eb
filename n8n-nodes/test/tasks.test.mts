import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { IHttpRequestOptions, INodeProperties } from 'n8n-workflow';

import { Swarmkeep } from '../dist/nodes/Swarmkeep/Swarmkeep.node.js';
import { completeTask, listTasks } from '../dist/nodes/Swarmkeep/tasks.js';
import { executeContext, workflow } from './fakes.mts';

const { NodeApiError, NodeOperationError } = workflow;

/** An open human subtask as GET /v1/tasks lists it. */
function task(n: number) {
	return {
		job_id: `job-${n}`,
		subtask_id: 'legal_review',
		instruction: 'Check the contract for liability caps',
		task: 'Prepare the vendor contract',
		depends_on: ['draft'],
		dependencies: [
			{ subtask_id: 'draft', role: 'writer', status: 'done', conclusion: 'Draft attached' },
		],
		deadline: null,
		links: {
			complete: `/v1/jobs/job-${n}/subtasks/legal_review/complete`,
			job: `/v1/jobs/job-${n}`,
		},
	};
}

/** A fake GET /v1/tasks over `total` tasks that answers at most `pageSize` per page. */
function pagedTasks(total: number, pageSize: number) {
	return (request: IHttpRequestOptions) => {
		assert.equal(request.url, '/v1/tasks');
		const start = Number(request.qs?.cursor ?? 0);
		const count = Math.min(pageSize, Number(request.qs?.limit), total - start);
		const items = Array.from({ length: count }, (_, i) => task(start + i));
		const next = start + count < total ? String(start + count) : null;
		return { status: 200, body: { items, next_cursor: next } };
	};
}

const subtask = {
	id: 'legal_review',
	role: 'human',
	instruction: 'Check the contract for liability caps',
	status: 'done',
	conclusion: 'Caps are fine',
};

const complete = { jobId: 'job-1', subtaskId: 'legal_review', conclusion: 'Caps are fine' };

describe('Human Task Get Many', () => {
	it('lists open human subtasks, following next_cursor up to the limit', async () => {
		const server = pagedTasks(5, 2);
		const { context, calls } = executeContext({
			parameters: { returnAll: false, limit: 3 },
			answers: [server, server],
		});
		const [output] = await listTasks.call(context);
		assert.deepEqual(
			output.map((item) => item.json.job_id),
			['job-0', 'job-1', 'job-2'],
		);
		assert.deepEqual(output[0].json, task(0));
		assert.deepEqual(output[2].pairedItem, { item: 0 });
		assert.equal(calls[0].request.method, 'GET');
		assert.deepEqual(calls[0].request.qs, { limit: 3 });
		assert.deepEqual(calls[1].request.qs, { limit: 1, cursor: '2' });
	});

	it('returns every page with Return All', async () => {
		const server = pagedTasks(5, 2);
		const { context, calls } = executeContext({
			parameters: { returnAll: true },
			answers: [server, server, server],
		});
		const [output] = await listTasks.call(context);
		assert.equal(output.length, 5);
		assert.equal(calls.length, 3);
		assert.equal(calls[0].request.qs?.limit, 100);
	});

	it('gives no items when nothing waits for a person', async () => {
		const { context } = executeContext({
			parameters: { returnAll: true },
			answers: [{ status: 200, body: { items: [], next_cursor: null } }],
		});
		assert.deepEqual(await listTasks.call(context), [[]]);
	});

	it('records an error per item with Continue On Fail', async () => {
		const { context } = executeContext({
			parameters: { returnAll: true },
			continueOnFail: true,
			answers: [{ status: 401, body: { detail: 'invalid API key' } }],
		});
		const [output] = await listTasks.call(context);
		assert.deepEqual(output, [
			{ json: { error: 'Swarmkeep API answered 401: invalid API key' }, pairedItem: { item: 0 } },
		]);
	});
});

describe('Human Task Complete', () => {
	it('posts the conclusion and who completed it, and returns the subtask', async () => {
		const { context, calls } = executeContext({
			parameters: { ...complete, completedBy: ' ana@example.com ' },
			answers: [{ status: 200, body: subtask }],
		});
		const [output] = await completeTask.call(context);
		assert.equal(calls.length, 1);
		const { credentialType, request } = calls[0];
		assert.equal(credentialType, 'swarmkeepApi');
		assert.equal(request.method, 'POST');
		assert.equal(request.baseURL, 'http://swarm.test:8080');
		assert.equal(request.url, '/v1/jobs/job-1/subtasks/legal_review/complete');
		assert.deepEqual(request.body, {
			conclusion: 'Caps are fine',
			completed_by: 'ana@example.com',
		});
		assert.equal(request.json, true);
		assert.deepEqual(output, [{ json: subtask, pairedItem: { item: 0 } }]);
	});

	it('leaves out completed_by when blank, and encodes the IDs into the path', async () => {
		const { context, calls } = executeContext({
			parameters: { jobId: 'job 1', subtaskId: 'a/b', conclusion: 'ok', completedBy: '  ' },
			answers: [{ status: 200, body: subtask }],
		});
		await completeTask.call(context);
		assert.equal(calls[0].request.url, '/v1/jobs/job%201/subtasks/a%2Fb/complete');
		assert.deepEqual(calls[0].request.body, { conclusion: 'ok' });
	});

	it('completes one subtask per input item', async () => {
		const conclusions = ['yes', 'no'];
		const { context, calls } = executeContext({
			items: [{ json: {} }, { json: {} }],
			parameters: { ...complete, conclusion: (i: number) => conclusions[i] },
			answers: [
				(request) => ({
					status: 200,
					body: { ...subtask, conclusion: (request.body as { conclusion: string }).conclusion },
				}),
				(request) => ({
					status: 200,
					body: { ...subtask, conclusion: (request.body as { conclusion: string }).conclusion },
				}),
			],
		});
		const [output] = await completeTask.call(context);
		assert.equal(calls.length, 2);
		assert.deepEqual(
			output.map((item) => [item.json.conclusion, item.pairedItem]),
			[
				['yes', { item: 0 }],
				['no', { item: 1 }],
			],
		);
	});

	it("surfaces a 409 with the API's message and a hint about the subtask", async () => {
		const { context } = executeContext({
			parameters: complete,
			answers: [
				{
					status: 409,
					body: { detail: 'Subtask legal_review is not waiting for a person (done).' },
				},
			],
		});
		await assert.rejects(completeTask.call(context), (error: Error) => {
			assert.ok(error instanceof NodeApiError);
			assert.equal(
				error.message,
				'Swarmkeep API answered 409: Subtask legal_review is not waiting for a person (done).',
			);
			assert.equal(error.httpCode, '409');
			assert.match(error.description ?? '', /not waiting for a person/);
			assert.match(error.description ?? '', /reassigned after its deadline/);
			return true;
		});
	});

	it('says which IDs to check on a 404', async () => {
		const { context } = executeContext({
			parameters: complete,
			answers: [{ status: 404, body: { detail: 'Job job-1 not found.' } }],
		});
		await assert.rejects(completeTask.call(context), (error: Error) => {
			assert.ok(error instanceof NodeApiError);
			assert.equal(error.message, 'Swarmkeep API answered 404: Job job-1 not found.');
			assert.match(error.description ?? '', /job ID and subtask ID/);
			return true;
		});
	});

	it('passes a 422 detail through', async () => {
		const { context } = executeContext({
			parameters: { ...complete, conclusion: '.' },
			answers: [
				{
					status: 422,
					body: {
						detail: [
							{ loc: ['body', 'conclusion'], msg: 'String should have at least 1 character' },
						],
					},
				},
			],
		});
		await assert.rejects(
			completeTask.call(context),
			/Swarmkeep API answered 422: body.conclusion: String should have at least 1 character/,
		);
	});

	it('refuses an empty conclusion or ID without calling the API', async () => {
		for (const [parameters, message] of [
			[{ ...complete, conclusion: '   ' }, /Conclusion is empty/],
			[{ ...complete, subtaskId: '' }, /Subtask ID is empty/],
			[{ ...complete, jobId: ' ' }, /Job ID is empty/],
		] as const) {
			const { context, calls } = executeContext({ parameters });
			await assert.rejects(completeTask.call(context), (error: Error) => {
				assert.ok(error instanceof NodeOperationError);
				assert.match(error.message, message);
				return true;
			});
			assert.equal(calls.length, 0);
		}
	});

	it('records errors per item with Continue On Fail and goes on', async () => {
		const { context } = executeContext({
			items: [{ json: {} }, { json: {} }],
			parameters: complete,
			continueOnFail: true,
			answers: [
				{ status: 409, body: { detail: 'Subtask legal_review is not waiting for a person.' } },
				{ status: 200, body: subtask },
			],
		});
		const [output] = await completeTask.call(context);
		assert.deepEqual(output, [
			{
				json: {
					error: 'Swarmkeep API answered 409: Subtask legal_review is not waiting for a person.',
				},
				pairedItem: { item: 0 },
			},
			{ json: subtask, pairedItem: { item: 1 } },
		]);
	});
});

describe('Human Task description', () => {
	const { description, customOperations } = new Swarmkeep();

	it('offers the Human Task resource with Complete and Get Many as custom operations', () => {
		const resource = description.properties.find((p: INodeProperties) => p.name === 'resource');
		assert.deepEqual(
			(resource?.options as Array<{ value: string }>).map((option) => option.value),
			['task', 'job'],
		);
		assert.deepEqual(Object.keys(customOperations.task).sort(), ['complete', 'getAll']);
		const operation = description.properties.find(
			(p: INodeProperties) =>
				p.name === 'operation' && p.displayOptions?.show?.resource?.[0] === 'task',
		);
		assert.deepEqual(
			(operation?.options as Array<{ value: string }>).map((option) => option.value),
			['complete', 'getAll'],
		);
		const completeFields = description.properties
			.filter(
				(p: INodeProperties) =>
					p.displayOptions?.show?.resource?.[0] === 'task' &&
					p.displayOptions?.show?.operation?.[0] === 'complete',
			)
			.map((p: INodeProperties) => [p.name, p.required ?? false]);
		assert.deepEqual(completeFields, [
			['jobId', true],
			['subtaskId', true],
			['conclusion', true],
			['completedBy', false],
		]);
	});
});
