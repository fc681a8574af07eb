import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';
import { jsonParse, NodeOperationError, sleep, WAIT_INDEFINITELY } from 'n8n-workflow';

import type { Job } from '../shared/transport';
import { asNodeError, swarmkeepRequest, TERMINAL_STATUSES } from '../shared/transport';
import { jobItem } from './artifacts';

type WaitMode = 'none' | 'poll' | 'callback';

interface RunSwarmOptions {
	allowHumans?: boolean;
	callbackUrl?: string;
	downloadArtifacts?: boolean;
	humanSubtasks?: { subtask?: Array<{ id?: string; instruction?: string }> };
	idempotencyKey?: string;
	maxParallel?: number;
	metadata?: string | IDataObject;
}

/** The server holds one long poll for at most this long. */
export const LONG_POLL_MAX_SECONDS = 60;
/** Extra time for a long-poll request beyond its server-side timeout. */
const LONG_POLL_SLACK_MS = 30_000;
/** A /wait that answers early without a finished job is retried no faster than this. */
const MIN_POLL_INTERVAL_MS = 1_000;

function isTerminal(job: Job): boolean {
	return TERMINAL_STATUSES.includes(job.status);
}

function parseMetadata(
	this: IExecuteFunctions,
	value: unknown,
	itemIndex: number,
): IDataObject | undefined {
	if (value === undefined || value === '') return undefined;
	const metadata =
		typeof value === 'string'
			? jsonParse<unknown>(value, {
					errorMessage: 'Metadata (JSON) is not valid JSON',
				})
			: value;
	if (!metadata || typeof metadata !== 'object' || Array.isArray(metadata)) {
		throw new NodeOperationError(this.getNode(), 'Metadata (JSON) must be a JSON object', {
			itemIndex,
			description: 'For example {"source": "n8n", "ticket": 42}',
		});
	}
	return metadata as IDataObject;
}

/** The Human Subtasks option as the API's `human_subtasks`; both fields of each are required. */
function humanSubtasksOf(
	this: IExecuteFunctions,
	value: RunSwarmOptions['humanSubtasks'],
	itemIndex: number,
): IDataObject[] {
	return (value?.subtask ?? []).map((entry, index) => {
		const id = String(entry.id ?? '').trim();
		const instruction = String(entry.instruction ?? '').trim();
		if (!id || !instruction) {
			throw new NodeOperationError(
				this.getNode(),
				`Human Subtask ${index + 1} needs both an ID and an instruction`,
				{ itemIndex, description: 'Fill in or remove the empty Human Subtask under Options.' },
			);
		}
		return { id, instruction };
	});
}

/** POST /v1/jobs for one input item. */
export async function submitJob(
	this: IExecuteFunctions,
	itemIndex: number,
	callbackUrl?: string,
): Promise<Job> {
	const task = (this.getNodeParameter('task', itemIndex) as string).trim();
	if (!task) {
		throw new NodeOperationError(this.getNode(), 'Task is empty', {
			itemIndex,
			description: 'Say what the swarm should do in the Task field.',
		});
	}
	const options = this.getNodeParameter('options', itemIndex, {}) as RunSwarmOptions;
	const body: IDataObject = { task };
	if (options.maxParallel !== undefined) body.max_parallel = options.maxParallel;
	const metadata = parseMetadata.call(this, options.metadata, itemIndex);
	if (metadata !== undefined) body.metadata = metadata;
	const humanSubtasks = humanSubtasksOf.call(this, options.humanSubtasks, itemIndex);
	if (humanSubtasks.length > 0) body.human_subtasks = humanSubtasks;
	if (options.allowHumans) body.allow_humans = true;
	const callback = callbackUrl ?? options.callbackUrl;
	if (callback) body.callback_url = callback;
	const headers: IDataObject = {};
	if (options.idempotencyKey) headers['Idempotency-Key'] = options.idempotencyKey;
	return (await swarmkeepRequest.call(
		this,
		'POST',
		'/v1/jobs',
		{ body, headers },
		itemIndex,
	)) as Job;
}

/** Long-polls GET /v1/jobs/{id}/wait until the job is terminal or `maxWaitMs` has passed. */
export async function waitForJob(
	this: IExecuteFunctions,
	job: Job,
	maxWaitMs: number,
	itemIndex: number,
): Promise<Job> {
	const deadline = Date.now() + maxWaitMs;
	const path = `/v1/jobs/${encodeURIComponent(job.id)}/wait`;
	while (!isTerminal(job)) {
		const remainingMs = deadline - Date.now();
		if (remainingMs <= 0) {
			throw new NodeOperationError(
				this.getNode(),
				`Job ${job.id} is still ${job.status} after ${maxWaitMs / 60_000} min`,
				{
					itemIndex,
					description:
						'Raise Max Wait, or use Wait Mode "Resume on Callback" for long jobs. The job itself goes on running; cancel it with the Cancel operation if it is no longer wanted.',
				},
			);
		}
		if (this.getExecutionCancelSignal()?.aborted) {
			throw new NodeOperationError(
				this.getNode(),
				`Stopped waiting for job ${job.id}: the execution was canceled`,
				{
					itemIndex,
				},
			);
		}
		const timeoutSeconds = Math.max(
			1,
			Math.min(LONG_POLL_MAX_SECONDS, Math.ceil(remainingMs / 1000)),
		);
		const started = Date.now();
		job = (await swarmkeepRequest.call(
			this,
			'GET',
			path,
			{ qs: { timeout: timeoutSeconds }, timeout: timeoutSeconds * 1000 + LONG_POLL_SLACK_MS },
			itemIndex,
		)) as Job;
		// A server that answers at once without a finished job must not make this a busy loop.
		const elapsed = Date.now() - started;
		if (!isTerminal(job) && elapsed < MIN_POLL_INTERVAL_MS) {
			await sleep(MIN_POLL_INTERVAL_MS - elapsed);
		}
	}
	return job;
}

function failedItem(this: IExecuteFunctions, error: Error, itemIndex: number): INodeExecutionData {
	return { json: { error: error.message }, pairedItem: { item: itemIndex } };
}

/**
 * Run Swarm with Resume on Callback: submit the job with this execution's resume URL as its
 * callback, then put the execution to wait (as n8n's Wait node does). The node's `webhook` method
 * receives the callback and its output replaces this node's output when the execution resumes.
 */
async function submitAndSleep(
	this: IExecuteFunctions,
	maxWaitMinutes: number,
): Promise<INodeExecutionData[][]> {
	const items = this.getInputData();
	if (items.length !== 1) {
		throw new NodeOperationError(
			this.getNode(),
			`Resume on Callback waits for one job per execution, but got ${items.length} items`,
			{
				description:
					'Put a Loop Over Items node (batch size 1) before this node, or use Wait Mode "Poll Until Done".',
			},
		);
	}
	const resumeUrl = this.evaluateExpression('{{ $execution.resumeUrl }}', 0) as string;
	let job: Job;
	try {
		job = await submitJob.call(this, 0, resumeUrl);
	} catch (error) {
		if (this.continueOnFail()) return [[failedItem.call(this, error as Error, 0)]];
		throw asNodeError(this.getNode(), error, 0);
	}
	const waitTill =
		maxWaitMinutes > 0 ? new Date(Date.now() + maxWaitMinutes * 60_000) : WAIT_INDEFINITELY;
	await this.putExecutionToWait(waitTill);
	return [[{ json: job, pairedItem: { item: 0 } }]];
}

/** The Run Swarm operation: one job per input item, returned as the job JSON. */
export async function runSwarm(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	const waitMode = this.getNodeParameter('waitMode', 0) as WaitMode;
	const maxWaitMinutes = this.getNodeParameter('maxWaitMinutes', 0, 60) as number;
	if (waitMode === 'callback') return await submitAndSleep.call(this, maxWaitMinutes);

	// Submit every item's job first, so the jobs run side by side while we wait on them in turn.
	const items = this.getInputData();
	const results: Array<Job | Error> = [];
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		try {
			results.push(await submitJob.call(this, itemIndex));
		} catch (error) {
			if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
			results.push(error as Error);
		}
	}
	if (waitMode === 'poll') {
		for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
			const submitted = results[itemIndex];
			if (submitted instanceof Error) continue;
			try {
				results[itemIndex] = await waitForJob.call(
					this,
					submitted,
					maxWaitMinutes * 60_000,
					itemIndex,
				);
			} catch (error) {
				if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
				results[itemIndex] = error as Error;
			}
		}
	}
	const output: INodeExecutionData[] = [];
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		const result = results[itemIndex];
		if (result instanceof Error) {
			output.push(failedItem.call(this, result, itemIndex));
			continue;
		}
		// Artifacts exist once the job has finished, so only a job we waited for has them.
		const options = this.getNodeParameter('options', itemIndex, {}) as RunSwarmOptions;
		const download = waitMode === 'poll' && options.downloadArtifacts === true;
		try {
			output.push(await jobItem.call(this, result, itemIndex, download));
		} catch (error) {
			if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
			output.push(failedItem.call(this, error as Error, itemIndex));
		}
	}
	return [output];
}
