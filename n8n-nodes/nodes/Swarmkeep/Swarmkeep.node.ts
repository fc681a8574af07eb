import type {
	INodeType,
	INodeTypeDescription,
	IWebhookFunctions,
	IWebhookResponseData,
} from 'n8n-workflow';
import { NodeConnectionTypes } from 'n8n-workflow';

import { JOB_EVENT_TYPES, receiveCallback, reject } from '../shared/callback';
import { jobFields, jobOperations } from './JobDescription';
import { listJobs } from './listJobs';
import { runSwarm } from './runSwarm';
import { completeTask, listTasks } from './tasks';
import { taskFields, taskOperations } from './TaskDescription';

/**
 * Runs and manages swarm jobs, and completes the subtasks a job gives to people. Job Get and Cancel
 * are declarative requests; Run Swarm, the Get Manys and Human Task Complete are custom operations
 * because they wait, page or word the API's errors for subtasks. The webhook receives the completion callback
 * of a Run Swarm in "Resume on Callback" mode and resumes the waiting execution with the job.
 */
// eslint-disable-next-line @n8n/community-nodes/webhook-lifecycle-complete -- its only webhook is the per-execution resume URL (restartWebhook), which nothing registers
export class Swarmkeep implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Swarmkeep',
		name: 'swarmkeep',
		icon: { light: 'file:swarmkeep.svg', dark: 'file:swarmkeep.dark.svg' },
		group: ['transform'],
		version: 1,
		subtitle: '={{$parameter["operation"] + ": " + $parameter["resource"]}}',
		description: 'Run agent swarm jobs on a swarmkeep server and wait for their results',
		defaults: {
			name: 'Swarmkeep',
		},
		usableAsTool: true,
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'swarmkeepApi', required: true }],
		requestDefaults: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/+$/, "")}}',
			headers: {
				Accept: 'application/json',
				'Content-Type': 'application/json',
			},
			// checkApiResponse turns error answers into errors that carry the API's detail.
			ignoreHttpStatusErrors: true,
		},
		// The restart webhook that "Resume on Callback" hands to the server as callback_url
		// ($execution.resumeUrl); like n8n's Wait node, it is not registered on activation.
		webhooks: [
			{
				name: 'default',
				httpMethod: 'POST',
				responseMode: 'onReceived',
				// Empty, not n8n's default 'firstEntryJson', so the caller gets webhookResponse below.
				responseData: '',
				path: '',
				restartWebhook: true,
			},
		],
		properties: [
			{
				displayName: 'Resource',
				name: 'resource',
				type: 'options',
				noDataExpression: true,
				options: [
					{ name: 'Human Task', value: 'task' },
					{ name: 'Job', value: 'job' },
				],
				default: 'job',
			},
			...jobOperations,
			...jobFields,
			...taskOperations,
			...taskFields,
		],
	};

	customOperations = {
		job: {
			runSwarm,
			getAll: listJobs,
		},
		task: {
			complete: completeTask,
			getAll: listTasks,
		},
	};

	/** Receives the completion callback of a job started with "Resume on Callback". */
	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const received = await receiveCallback.call(this, false);
		if (received.rejection) {
			reject(this, received.rejection);
			return { noWebhookResponse: true };
		}
		// Progress events share the channel; the execution sleeps on until the job itself finishes.
		if (!JOB_EVENT_TYPES.includes(received.event.type) || !received.event.data) {
			return { webhookResponse: { received: true, resumed: false } };
		}
		return {
			workflowData: [[{ json: received.event.data, pairedItem: { item: 0 } }]],
			webhookResponse: { received: true, resumed: true },
		};
	}
}
