import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { IHttpRequestOptions, INodeProperties } from 'n8n-workflow';

import { artifactPath, attachArtifacts } from '../dist/nodes/Swarmkeep/artifacts.js';
import { runSwarm } from '../dist/nodes/Swarmkeep/runSwarm.js';
import { Swarmkeep } from '../dist/nodes/Swarmkeep/Swarmkeep.node.js';
import type { FakeBinary } from './fakes.mts';
import { executeContext, executeSingleContext, job, workflow } from './fakes.mts';

const { NodeApiError } = workflow;

const base = { task: 'write a report', waitMode: 'poll', maxWaitMinutes: 10 };

const FILES: Record<string, { bytes: Buffer; type: string }> = {
	'/v1/jobs/job-1/artifacts/report.md': {
		bytes: Buffer.from('# Report\n'),
		type: 'text/markdown; charset=utf-8',
	},
	'/v1/jobs/job-1/artifacts/charts/q1%20sales.png': {
		bytes: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x00, 0xff]),
		type: 'image/png',
	},
};

/** A finished job listing the two FILES as artifacts. */
function finished() {
	return job({
		status: 'succeeded',
		result: {
			synthesis: 'done',
			subtasks: [],
			artifacts: [
				{
					name: 'report.md',
					subtask_id: 'writer',
					size: 9,
					content_type: 'text/markdown',
					url: '/v1/jobs/job-1/artifacts/report.md',
				},
				{
					name: 'charts/q1 sales.png',
					subtask_id: 'analyst',
					size: 6,
					content_type: 'image/png',
					url: '/v1/jobs/job-1/artifacts/charts/q1 sales.png',
				},
			],
		},
	});
}

/** A fake artifact endpoint: the file's bytes (as an ArrayBuffer with `arrayBuffer`), or a JSON 404 in bytes. */
function fileServer(arrayBuffer = false) {
	return (request: IHttpRequestOptions) => {
		const file = FILES[request.url];
		if (!file) {
			return {
				status: 404,
				body: Buffer.from(JSON.stringify({ detail: `no artifact at ${request.url}` })),
			};
		}
		const bytes = arrayBuffer
			? file.bytes.buffer.slice(file.bytes.byteOffset, file.bytes.byteOffset + file.bytes.length)
			: file.bytes;
		return { status: 200, body: bytes, headers: { 'content-type': file.type } };
	};
}

function binaryOf(value: unknown): FakeBinary {
	return value as FakeBinary;
}

describe('Download Artifacts', () => {
	it('attaches each artifact of a polled job as binary data', async () => {
		const files = fileServer();
		const { context, calls } = executeContext({
			parameters: { ...base, options: { downloadArtifacts: true } },
			answers: [{ status: 202, body: job() }, { status: 200, body: finished() }, files, files],
		});
		const [output] = await runSwarm.call(context);
		assert.deepEqual(
			calls.map((call) => `${call.request.method} ${call.request.url}`),
			[
				'POST /v1/jobs',
				'GET /v1/jobs/job-1/wait',
				'GET /v1/jobs/job-1/artifacts/report.md',
				'GET /v1/jobs/job-1/artifacts/charts/q1%20sales.png',
			],
		);
		const download = calls[2];
		assert.equal(download.credentialType, 'swarmkeepApi');
		assert.equal(download.request.baseURL, 'http://swarm.test:8080');
		assert.equal(download.request.encoding, 'arraybuffer');
		assert.equal(download.request.json, false);
		assert.equal(download.request.returnFullResponse, true);

		assert.equal(output.length, 1);
		assert.deepEqual(output[0].json, finished());
		assert.deepEqual(output[0].pairedItem, { item: 0 });
		assert.deepEqual(Object.keys(output[0].binary ?? {}), ['artifact_0', 'artifact_1']);
		const report = binaryOf(output[0].binary?.artifact_0);
		assert.equal(Buffer.from(report.data, 'base64').toString(), '# Report\n');
		assert.equal(report.fileName, 'report.md');
		assert.equal(report.mimeType, 'text/markdown');
		const chart = binaryOf(output[0].binary?.artifact_1);
		assert.deepEqual(
			Buffer.from(chart.data, 'base64'),
			FILES['/v1/jobs/job-1/artifacts/charts/q1%20sales.png'].bytes,
		);
		assert.equal(chart.fileName, 'q1 sales.png');
		assert.equal(chart.mimeType, 'image/png');
	});

	it('takes an ArrayBuffer body, and the content type from the response when the job has none', async () => {
		const listed = finished();
		const artifacts = (listed.result as { artifacts: Array<Record<string, unknown>> }).artifacts;
		delete artifacts[0].content_type;
		const files = fileServer(true);
		const { context } = executeContext({
			parameters: { ...base, options: { downloadArtifacts: true } },
			answers: [{ status: 202, body: job() }, { status: 200, body: listed }, files, files],
		});
		const [output] = await runSwarm.call(context);
		const report = binaryOf(output[0].binary?.artifact_0);
		assert.equal(Buffer.from(report.data, 'base64').toString(), '# Report\n');
		assert.equal(report.mimeType, 'text/markdown');
	});

	it('downloads nothing unless the option is on, and nothing for a job it did not wait for', async () => {
		const polled = executeContext({
			parameters: { ...base, options: {} },
			answers: [
				{ status: 202, body: job() },
				{ status: 200, body: finished() },
			],
		});
		const [polledOutput] = await runSwarm.call(polled.context);
		assert.equal(polled.calls.length, 2);
		assert.equal(polledOutput[0].binary, undefined);

		const queued = executeContext({
			parameters: { ...base, waitMode: 'none', options: { downloadArtifacts: true } },
			answers: [{ status: 202, body: job() }],
		});
		const [queuedOutput] = await runSwarm.call(queued.context);
		assert.equal(queued.calls.length, 1);
		assert.equal(queuedOutput[0].binary, undefined);
	});

	it('gives a failed job (no result) no binary data', async () => {
		const { context, calls } = executeContext({
			parameters: { ...base, options: { downloadArtifacts: true } },
			answers: [
				{ status: 202, body: job() },
				{ status: 200, body: job({ status: 'failed', error: 'planner gave up' }) },
			],
		});
		const [output] = await runSwarm.call(context);
		assert.equal(calls.length, 2);
		assert.equal(output[0].json.status, 'failed');
		assert.equal(output[0].binary, undefined);
	});

	it("fails the item with the API's detail when an artifact is gone, or records it with Continue On Fail", async () => {
		const listed = finished();
		(listed.result as { artifacts: Array<Record<string, unknown>> }).artifacts[0].url =
			'/v1/jobs/job-1/artifacts/gone.md';
		const answers = () => [
			{ status: 202, body: job() },
			{ status: 200, body: listed },
			fileServer(),
		];
		const failing = executeContext({
			parameters: { ...base, options: { downloadArtifacts: true } },
			answers: answers(),
		});
		await assert.rejects(runSwarm.call(failing.context), (error: Error) => {
			assert.ok(error instanceof NodeApiError);
			assert.equal(
				error.message,
				'Swarmkeep API answered 404: no artifact at /v1/jobs/job-1/artifacts/gone.md',
			);
			assert.match(error.description ?? '', /Turn off Download Artifacts/);
			return true;
		});

		const tolerant = executeContext({
			parameters: { ...base, options: { downloadArtifacts: true } },
			continueOnFail: true,
			answers: answers(),
		});
		const [output] = await runSwarm.call(tolerant.context);
		assert.deepEqual(output, [
			{
				json: {
					error: 'Swarmkeep API answered 404: no artifact at /v1/jobs/job-1/artifacts/gone.md',
				},
				pairedItem: { item: 0 },
			},
		]);
	});

	it('attaches artifacts to a Get when its option is on, and leaves the item alone when off', async () => {
		const files = fileServer();
		const on = executeSingleContext({
			parameters: { jobId: 'job-1', options: { downloadArtifacts: true } },
			answers: [files, files],
		});
		const items = [{ json: finished() }];
		const result = await attachArtifacts.call(on.context, items);
		assert.equal(on.calls.length, 2);
		assert.deepEqual(Object.keys(result[0].binary ?? {}), ['artifact_0', 'artifact_1']);
		assert.equal(binaryOf(result[0].binary?.artifact_0).fileName, 'report.md');

		const off = executeSingleContext({ parameters: { jobId: 'job-1', options: {} } });
		const untouched = [{ json: finished() }];
		assert.deepEqual(await attachArtifacts.call(off.context, untouched), [{ json: finished() }]);
		assert.equal(off.calls.length, 0);
	});

	it('runs the hook after checkApiResponse on the declarative Get', () => {
		const { description } = new Swarmkeep();
		const operation = description.properties.find(
			(p: INodeProperties) =>
				p.name === 'operation' && p.displayOptions?.show?.resource?.[0] === 'job',
		);
		const get = (
			operation?.options as Array<{
				value: string;
				routing?: { output?: { postReceive?: unknown[] } };
			}>
		).find((option) => option.value === 'get');
		assert.equal(get?.routing?.output?.postReceive?.length, 2);
		assert.equal(get?.routing?.output?.postReceive?.[1], attachArtifacts);
	});
});

describe('artifact paths', () => {
	const server = 'http://swarm.test:8080';

	it('uses the listed path, encoding each segment once', () => {
		assert.equal(
			artifactPath(server, 'job-1', { name: 'a b.txt', url: '/v1/jobs/job-1/artifacts/a b.txt' }),
			'/v1/jobs/job-1/artifacts/a%20b.txt',
		);
		assert.equal(
			artifactPath(server, 'job-1', { name: 'a b.txt', url: '/v1/jobs/job-1/artifacts/a%20b.txt' }),
			'/v1/jobs/job-1/artifacts/a%20b.txt',
		);
		assert.equal(
			artifactPath(server, 'job-1', {
				name: '50%#1.txt',
				url: '/v1/jobs/job-1/artifacts/50%#1.txt',
			}),
			'/v1/jobs/job-1/artifacts/50%25%231.txt',
		);
	});

	it('builds the path from the name when there is no url', () => {
		assert.equal(
			artifactPath(server, 'job-1', { name: 'out/report.md' }),
			'/v1/jobs/job-1/artifacts/out/report.md',
		);
	});

	it('follows an absolute URL only on the credential’s server', () => {
		assert.equal(
			artifactPath(server, 'job-1', {
				name: 'r.md',
				url: 'http://swarm.test:8080/v1/jobs/job-1/artifacts/r.md',
			}),
			'/v1/jobs/job-1/artifacts/r.md',
		);
		assert.throws(
			() =>
				artifactPath(server, 'job-1', {
					name: 'r.md',
					url: 'https://elsewhere.example/v1/jobs/job-1/artifacts/r.md',
				}),
			/not on the swarmkeep server http:\/\/swarm\.test:8080; not sending the API key there/,
		);
		assert.throws(
			() => artifactPath(server, 'job-1', { name: 'r.md', url: '//elsewhere.example/r.md' }),
			/not sending the API key there/,
		);
	});
});
