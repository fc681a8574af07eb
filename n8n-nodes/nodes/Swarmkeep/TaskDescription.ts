import type { INodeProperties } from 'n8n-workflow';

const showFor = (operation: string[]) => ({ show: { resource: ['task'], operation } });

/**
 * The Human Task resource: subtasks of a job that wait for a person. Both operations are custom
 * (Get Many pages, Complete words the API's 404/409 for subtasks).
 */
export const taskOperations: INodeProperties[] = [
	{
		displayName: 'Operation',
		name: 'operation',
		type: 'options',
		noDataExpression: true,
		displayOptions: { show: { resource: ['task'] } },
		options: [
			{
				name: 'Complete',
				value: 'complete',
				description: "Finish a human subtask with the person's conclusion; the job goes on",
				action: 'Complete a human task',
			},
			{
				name: 'Get Many',
				value: 'getAll',
				description: 'List the open human subtasks of the API key’s tenant',
				action: 'Get many human tasks',
			},
		],
		default: 'getAll',
	},
];

/** The fields of each Human Task operation. */
export const taskFields: INodeProperties[] = [
	// ---------------------------------------------------------------- complete
	{
		displayName: 'Job ID',
		name: 'jobId',
		type: 'string',
		required: true,
		default: '',
		placeholder: 'e.g. {{ $json.job_id }}',
		description: 'The job the subtask belongs to (`job_id` of a Get Many item)',
		displayOptions: showFor(['complete']),
	},
	{
		displayName: 'Subtask ID',
		name: 'subtaskId',
		type: 'string',
		required: true,
		default: '',
		placeholder: 'e.g. {{ $json.subtask_id }}',
		description: 'The human subtask to complete (`subtask_id` of a Get Many item)',
		displayOptions: showFor(['complete']),
	},
	{
		displayName: 'Conclusion',
		name: 'conclusion',
		type: 'string',
		typeOptions: { rows: 4 },
		required: true,
		default: '',
		description:
			"The person's answer or result; the subtasks that depend on this one receive it like an agent's conclusion",
		displayOptions: showFor(['complete']),
	},
	{
		displayName: 'Completed By',
		name: 'completedBy',
		type: 'string',
		default: '',
		placeholder: 'e.g. ana@example.com',
		description: 'Who completed the subtask; recorded with it (optional)',
		displayOptions: showFor(['complete']),
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
		displayOptions: { show: { resource: ['task'], operation: ['getAll'], returnAll: [false] } },
	},
];
