import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { IHttpRequestOptions } from 'n8n-workflow';

import { listJobs } from '../dist/nodes/Swarmkeep/listJobs.js';
import { executeContext } from './fakes.mts';

/** A fake GET /v1/jobs over `total` jobs that answers at most `pageSize` per page. */
function pagedServer(total: number, pageSize: number) {
	return (request: IHttpRequestOptions) => {
		const start = Number(request.qs?.cursor ?? 0);
		const count = Math.min(pageSize, Number(request.qs?.limit), total - start);
		const items = Array.from({ length: count }, (_, i) => ({
			id: `job-${start + i}`,
			status: 'succeeded',
		}));
		const next = start + count < total ? String(start + count) : null;
		return { status: 200, body: { items, next_cursor: next } };
	};
}

describe('Get Many', () => {
	it('follows next_cursor until the limit and stops there', async () => {
		const server = pagedServer(10, 3);
		const { context, calls } = executeContext({
			parameters: { returnAll: false, limit: 5, filters: { status: 'succeeded' } },
			answers: [server, server],
		});
		const [output] = await listJobs.call(context);
		assert.deepEqual(
			output.map((item) => item.json.id),
			['job-0', 'job-1', 'job-2', 'job-3', 'job-4'],
		);
		assert.deepEqual(calls[0].request.qs, { limit: 5, status: 'succeeded' });
		assert.deepEqual(calls[1].request.qs, { limit: 2, status: 'succeeded', cursor: '3' });
		assert.deepEqual(output[0].pairedItem, { item: 0 });
	});

	it('returns every page with Return All', async () => {
		const server = pagedServer(7, 3);
		const { context, calls } = executeContext({
			parameters: { returnAll: true, filters: {} },
			answers: [server, server, server],
		});
		const [output] = await listJobs.call(context);
		assert.equal(output.length, 7);
		assert.equal(calls.length, 3);
		assert.equal(calls[0].request.qs?.limit, 100);
		assert.equal(calls[0].request.qs?.status, undefined);
	});

	it('records an error per item with Continue On Fail', async () => {
		const { context } = executeContext({
			parameters: { returnAll: true, filters: {} },
			continueOnFail: true,
			answers: [{ status: 401, body: { detail: 'invalid API key' } }],
		});
		const [output] = await listJobs.call(context);
		assert.deepEqual(output, [
			{ json: { error: 'Swarmkeep API answered 401: invalid API key' }, pairedItem: { item: 0 } },
		]);
	});
});
