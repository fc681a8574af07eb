import type {
	INodeType,
	INodeTypeDescription,
	IWebhookFunctions,
	IWebhookResponseData,
} from 'n8n-workflow';
import { NodeConnectionTypes } from 'n8n-workflow';

import { EVENT_TYPES, JOB_EVENT_TYPES, receiveCallback, reject } from '../shared/callback';

/**
 * Starts a workflow when swarmkeep calls back: point a job's callback_url at this node's
 * production URL. Each accepted event becomes one item, `{"type", "timestamp", "data"}`.
 */
// eslint-disable-next-line @n8n/community-nodes/webhook-lifecycle-complete -- swarmkeep has no webhook registry: each job names its callback_url
export class SwarmkeepTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Swarmkeep Trigger',
		name: 'swarmkeepTrigger',
		icon: { light: 'file:swarmkeep.svg', dark: 'file:swarmkeep.dark.svg' },
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["events"].join(", ")}}',
		description: 'Starts the workflow when a swarmkeep job finishes',
		defaults: {
			name: 'Swarmkeep Trigger',
		},
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'swarmkeepApi', required: true }],
		// swarmkeep has no webhook registry to create or delete: each job names its callback_url.
		webhooks: [
			{
				name: 'default',
				httpMethod: 'POST',
				responseMode: 'onReceived',
				// Empty, not n8n's default 'firstEntryJson', so the caller gets webhookResponse below.
				responseData: '',
				path: 'swarmkeep',
			},
		],
		properties: [
			{
				displayName:
					'Pass this node\'s production URL as "callback_url" when starting a job (Run Swarm, option Callback URL). The swarmkeep server must be allowed to reach it (SWARMKEEP_CALLBACK_ALLOW for local addresses).',
				name: 'notice',
				type: 'notice',
				default: '',
			},
			{
				displayName: 'Events',
				name: 'events',
				type: 'multiOptions',
				options: [
					{ name: 'Job Canceled', value: 'job.canceled' },
					{ name: 'Job Failed', value: 'job.failed' },
					{ name: 'Job Succeeded', value: 'job.succeeded' },
					{
						name: 'Subtask Finished',
						value: 'subtask.finished',
						description: 'Progress events, sent only for jobs started with progress callbacks',
					},
				],
				default: [...JOB_EVENT_TYPES],
				description: 'Which events start the workflow; others are acknowledged and dropped',
			},
			{
				displayName: 'Verify Signature',
				name: 'verifySignature',
				type: 'boolean',
				default: true,
				description:
					'Whether to reject callbacks unless the credential has a webhook secret and the Standard Webhooks signature matches it (timestamps older than 5 minutes are rejected too)',
			},
		],
	};

	/** Verifies and filters one callback; accepted events start the workflow. */
	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const verifySignature = this.getNodeParameter('verifySignature', true) as boolean;
		const received = await receiveCallback.call(this, verifySignature);
		if (received.rejection) {
			reject(this, received.rejection);
			return { noWebhookResponse: true };
		}
		const events = this.getNodeParameter('events', []) as string[];
		const { type } = received.event;
		if (!EVENT_TYPES.includes(type) || !events.includes(type)) {
			return { webhookResponse: { received: true, ignored: type } };
		}
		return {
			workflowData: [[{ json: received.event }]],
			webhookResponse: { received: true, type },
		};
	}
}
