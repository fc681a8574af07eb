import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { IExecuteSingleFunctions, INodeProperties } from 'n8n-workflow';

import { SwarmkeepApi } from '../dist/credentials/SwarmkeepApi.credentials.js';
import { Swarmkeep } from '../dist/nodes/Swarmkeep/Swarmkeep.node.js';
import {
	checkApiResponse,
	describeDetail,
	swarmkeepRequest,
} from '../dist/nodes/shared/transport.js';
import { executeContext, NODE, workflow } from './fakes.mts';

const { NodeApiError } = workflow;

describe('API errors', () => {
	it("puts the API's detail in one line", () => {
		assert.equal(describeDetail({ detail: 'job not found' }), 'job not found');
		assert.equal(
			describeDetail({
				detail: [
					{ loc: ['body', 'task'], msg: 'Field required' },
					{ loc: ['query', 'limit'], msg: 'Input should be greater than 0' },
				],
			}),
			'body.task: Field required; query.limit: Input should be greater than 0',
		);
		assert.equal(describeDetail('<html>Bad Gateway</html>'), '<html>Bad Gateway</html>');
		assert.equal(describeDetail({}), undefined);
	});

	it('throws a NodeApiError with the status and detail', async () => {
		const { context } = executeContext({
			parameters: {},
			answers: [{ status: 404, body: { detail: 'job nope not found' } }],
		});
		await assert.rejects(
			swarmkeepRequest.call(context, 'GET', '/v1/jobs/nope', {}, 0),
			(error: Error) => {
				assert.ok(error instanceof NodeApiError);
				assert.equal(error.message, 'Swarmkeep API answered 404: job nope not found');
				assert.match(error.description ?? '', /Check the job ID/);
				return true;
			},
		);
	});

	it('says where it tried to go when the server is unreachable', async () => {
		const { context } = executeContext({
			parameters: {},
			answers: [
				() => {
					throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8080'), {
						code: 'ECONNREFUSED',
					});
				},
			],
		});
		await assert.rejects(
			swarmkeepRequest.call(context, 'GET', '/v1/jobs', {}, 0),
			(error: Error) => {
				assert.ok(error instanceof NodeApiError);
				assert.match(error.message, /refused the connection/);
				assert.match(
					error.description ?? '',
					/Could not reach the swarmkeep API at http:\/\/swarm\.test:8080\/v1\/jobs \(connect ECONNREFUSED/,
				);
				return true;
			},
		);
	});

	it('lets declarative answers below 400 through and turns the rest into errors', async () => {
		const context = {
			getNode: () => NODE,
			getItemIndex: () => 0,
		} as unknown as IExecuteSingleFunctions;
		const items = [{ json: { id: 'job-1' } }];
		assert.equal(
			await checkApiResponse.call(context, items, { statusCode: 200, headers: {}, body: {} }),
			items,
		);
		await assert.rejects(
			checkApiResponse.call(context, items, {
				statusCode: 409,
				headers: {},
				body: { detail: 'job job-1 already finished' },
			}),
			/Swarmkeep API answered 409: job job-1 already finished/,
		);
	});
});

describe('node descriptions', () => {
	const { description, customOperations } = new Swarmkeep();
	const operation = description.properties.find(
		(p: INodeProperties) =>
			p.name === 'operation' && p.displayOptions?.show?.resource?.[0] === 'job',
	);

	it('routes Get and Cancel declaratively and runs the rest as custom operations', () => {
		const routes = Object.fromEntries(
			(
				operation?.options as Array<{
					value: string;
					routing?: { request: { method: string; url: string } };
				}>
			).map((option) => [option.value, option.routing?.request]),
		);
		assert.deepEqual(routes.get, {
			method: 'GET',
			url: '=/v1/jobs/{{encodeURIComponent($parameter.jobId)}}',
		});
		assert.deepEqual(routes.cancel, {
			method: 'POST',
			url: '=/v1/jobs/{{encodeURIComponent($parameter.jobId)}}/cancel',
		});
		assert.deepEqual(Object.keys(customOperations.job).sort(), ['getAll', 'runSwarm']);
		assert.equal(description.webhooks?.[0].restartWebhook, true);
	});

	it('authenticates with a bearer token and tests the key with one listed job', () => {
		const credential = new SwarmkeepApi();
		assert.equal(
			credential.authenticate.properties.headers?.Authorization,
			'=Bearer {{$credentials.apiKey}}',
		);
		assert.equal(credential.test.request.url, '/v1/jobs');
		assert.deepEqual(credential.test.request.qs, { limit: 1 });
		assert.equal(
			credential.properties.find((p: INodeProperties) => p.name === 'baseUrl')?.default,
			'http://127.0.0.1:8080',
		);
	});
});
