import type { INodeProperties } from 'n8n-workflow';

import { checkApiResponse } from '../shared/transport';
import { attachArtifacts } from './artifacts';

const showFor = (operation: string[]) => ({ show: { resource: ['job'], operation } });

/** The Job resource's operations: Get and Cancel are plain declarative requests. */
export const jobOperations: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['job'] } },
		options: [
			{
				name: 'Cancel',
				value: 'cancel',
				description: 'Cancel a running job and its sub-agents',
				action: 'Cancel a job',
				routing: {
					request: {
						method: 'POST',
						url: '=/v1/jobs/{{encodeURIComponent($parameter.jobId)}}/cancel',
					},
					output: { postReceive: [checkApiResponse] },
				},
			},
			{
				name: 'Get',
				value: 'get',
				description: 'Get a job with its progress, subtasks and result',
				action: 'Get a job',
				routing: {
					request: {
						method: 'GET',
						url: '=/v1/jobs/{{encodeURIComponent($parameter.jobId)}}',
					},
					output: { postReceive: [checkApiResponse, attachArtifacts] },
				},
			},
			{
				name: 'Get Many',
				value: 'getAll',
				description: 'List jobs, newest first',
				action: 'Get many jobs',
			},
			{
				name: 'Run Swarm',
				value: 'runSwarm',
				description: 'Start a swarm job on a task and optionally wait for its result',
				action: 'Run a swarm job',
			},
		],
		default: 'runSwarm',
	},
];

/** The fields of each operation. */
export const jobFields: INodeProperties[] = [
	// ---------------------------------------------------------------- runSwarm
	{
		displayName: 'Task',
		name: 'task',
		type: 'string',
		typeOptions: { rows: 4 },
		required: true,
		default: '',
		placeholder: 'e.g. Compare the three largest vector databases and write a one-page brief',
		description: 'What the swarm should do; the orchestrator splits it into subtasks',
		displayOptions: showFor(['runSwarm']),
	},
	{
		displayName: 'Wait Mode',
		name: 'waitMode',
		type: 'options',
		default: 'poll',
		displayOptions: showFor(['runSwarm']),
		options: [
			{
				name: "Don't Wait",
				value: 'none',
				description: 'Return the queued job at once',
			},
			{
				name: 'Poll Until Done',
				value: 'poll',
				description: 'Long-poll the job until it finishes, then return it (holds the execution)',
			},
			{
				name: 'Resume on Callback',
				value: 'callback',
				description:
					'Pause the execution until the server calls back when the job finishes; nothing runs meanwhile. Needs n8n to be reachable from the swarmkeep server.',
			},
		],
	},
	{
		displayName: 'Max Wait (Minutes)',
		name: 'maxWaitMinutes',
		type: 'number',
		typeOptions: { minValue: 0, numberPrecision: 2 },
		default: 60,
		description:
			'Poll Until Done: fail the item if the job is still running after this long. Resume on Callback: resume after this long even without a callback, passing the input item through (0 waits forever).',
		displayOptions: showFor(['runSwarm']),
		hint: 'With Resume on Callback, 0 waits forever',
	},
	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: showFor(['runSwarm']),
		options: [
			{
				displayName: 'Allow Humans In Plan',
				name: 'allowHumans',
				type: 'boolean',
				default: false,
				description:
					'Whether the orchestrator may assign subtasks of its plan to a person; they wait until completed with Human Task > Complete',
			},
			{
				displayName: 'Callback URL',
				name: 'callbackUrl',
				type: 'string',
				default: '',
				placeholder: 'e.g. https://n8n.example.com/webhook/…/swarmkeep',
				description:
					'Where the server posts the signed completion event (for example a Swarmkeep Trigger). Ignored with Resume on Callback, which uses this execution’s resume URL.',
			},
			{
				displayName: 'Download Artifacts',
				name: 'downloadArtifacts',
				type: 'boolean',
				default: false,
				description:
					'Whether to download the files the job produced (`result.artifacts`) and attach them as binary data: `artifact_0` for the first, `artifact_1` for the next, and so on. Only with Wait Mode Poll Until Done: a job from Resume on Callback or Don’t Wait has its artifacts fetched by a Get with this option.',
			},
			{
				displayName: 'Human Subtasks',
				name: 'humanSubtasks',
				type: 'fixedCollection',
				typeOptions: { multipleValues: true },
				placeholder: 'Add Human Subtask',
				default: {},
				description:
					'Subtasks you assign to a person; the job waits for each until it is completed with Human Task > Complete',
				options: [
					{
						displayName: 'Subtask',
						name: 'subtask',
						values: [
							{
								displayName: 'ID',
								name: 'id',
								type: 'string',
								default: '',
								placeholder: 'e.g. legal_review',
								description: 'The subtask ID; other subtasks can depend on it',
							},
							{
								displayName: 'Instruction',
								name: 'instruction',
								type: 'string',
								typeOptions: { rows: 2 },
								default: '',
								description: 'What the person should do',
							},
						],
					},
				],
			},
			{
				displayName: 'Idempotency Key',
				name: 'idempotencyKey',
				type: 'string',
				default: '',
				description:
					'A retry with the same key and body returns the same job instead of starting another',
			},
			{
				displayName: 'Max Parallel',
				name: 'maxParallel',
				type: 'number',
				typeOptions: { minValue: 1, maxValue: 300 },
				default: 8,
				description: 'Most sub-agents the job runs at once',
			},
			{
				displayName: 'Metadata (JSON)',
				name: 'metadata',
				type: 'json',
				default: '{}',
				description: 'Any JSON object; stored with the job and returned with it',
			},
		],
	},

	// ---------------------------------------------------------------- get, cancel
	{
		displayName: 'Job ID',
		name: 'jobId',
		type: 'string',
		required: true,
		default: '',
		description: 'The ID of the job, as returned by Run Swarm',
		displayOptions: showFor(['get', 'cancel']),
	},

	{
		displayName: 'Options',
		name: 'options',
		type: 'collection',
		placeholder: 'Add Option',
		default: {},
		displayOptions: showFor(['get']),
		options: [
			{
				displayName: 'Download Artifacts',
				name: 'downloadArtifacts',
				type: 'boolean',
				default: false,
				description:
					'Whether to download the files the job produced (`result.artifacts`) and attach them as binary data: `artifact_0` for the first, `artifact_1` for the next, and so on. A job that has not succeeded has none.',
			},
		],
	},

	// ---------------------------------------------------------------- getAll
	{
		displayName: 'Return All',
		name: 'returnAll',
		type: 'boolean',
		default: false,
		description: 'Whether to return all results or only up to a given limit',
		displayOptions: showFor(['getAll']),
	},
	{
		displayName: 'Limit',
		name: 'limit',
		type: 'number',
		typeOptions: { minValue: 1 },
		default: 50,
		description: 'Max number of results to return',
		displayOptions: { show: { resource: ['job'], operation: ['getAll'], returnAll: [false] } },
	},
	{
		displayName: 'Filters',
		name: 'filters',
		type: 'collection',
		placeholder: 'Add Filter',
		default: {},
		displayOptions: showFor(['getAll']),
		options: [
			{
				displayName: 'Status',
				name: 'status',
				type: 'options',
				default: 'running',
				options: [
					{ name: 'Canceled', value: 'canceled' },
					{ name: 'Failed', value: 'failed' },
					{ name: 'Planning', value: 'planning' },
					{ name: 'Queued', value: 'queued' },
					{ name: 'Running', value: 'running' },
					{ name: 'Succeeded', value: 'succeeded' },
					{ name: 'Synthesizing', value: 'synthesizing' },
				],
			},
		],
	},
];
