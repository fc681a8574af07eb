import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';

import { asNodeError, swarmkeepRequest } from '../shared/transport';
import { listForEachItem, listPages } from './listJobs';

/** What the API's errors mean for Complete; its 409 is about the subtask, not the job. */
const COMPLETE_HINTS: Record<number, string> = {
	404: 'No such job or subtask for this API key. Check the job ID and subtask ID (Human Task > Get Many lists the open ones).',
	409: 'The subtask is not waiting for a person: it is already done, was reassigned after its deadline, or is not a human subtask.',
	422: 'The conclusion was rejected; it must not be empty.',
};

/** The Human Task Get Many operation: GET /v1/tasks, the open human subtasks of the key's tenant. */
export async function listTasks(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	return await listForEachItem.call(this, async function (this: IExecuteFunctions, itemIndex) {
		return await listPages.call(this, '/v1/tasks', itemIndex);
	});
}

function requiredString(
	this: IExecuteFunctions,
	name: string,
	label: string,
	itemIndex: number,
): string {
	const value = String(this.getNodeParameter(name, itemIndex, '') ?? '').trim();
	if (!value) {
		throw new NodeOperationError(this.getNode(), `${label} is empty`, {
			itemIndex,
			description: `Set ${label}, for example from the Human Task > Get Many item or a form field.`,
		});
	}
	return value;
}

/** POST /v1/jobs/{jobId}/subtasks/{subtaskId}/complete for one input item. */
async function completeTaskForItem(
	this: IExecuteFunctions,
	itemIndex: number,
): Promise<IDataObject> {
	const jobId = requiredString.call(this, 'jobId', 'Job ID', itemIndex);
	const subtaskId = requiredString.call(this, 'subtaskId', 'Subtask ID', itemIndex);
	const conclusion = String(this.getNodeParameter('conclusion', itemIndex, '') ?? '');
	if (!conclusion.trim()) {
		throw new NodeOperationError(this.getNode(), 'Conclusion is empty', {
			itemIndex,
			description: "Write the person's answer or result in the Conclusion field.",
		});
	}
	const body: IDataObject = { conclusion };
	const completedBy = String(this.getNodeParameter('completedBy', itemIndex, '') ?? '').trim();
	if (completedBy) body.completed_by = completedBy;
	return (await swarmkeepRequest.call(
		this,
		'POST',
		`/v1/jobs/${encodeURIComponent(jobId)}/subtasks/${encodeURIComponent(subtaskId)}/complete`,
		{ body, hints: COMPLETE_HINTS },
		itemIndex,
	)) as IDataObject;
}

/** The Human Task Complete operation: one completed subtask per input item. */
export async function completeTask(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	const output: INodeExecutionData[] = [];
	const items = this.getInputData();
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		try {
			const subtask = await completeTaskForItem.call(this, itemIndex);
			output.push({ json: subtask, pairedItem: { item: itemIndex } });
		} catch (error) {
			if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
			output.push({ json: { error: (error as Error).message }, pairedItem: { item: itemIndex } });
		}
	}
	return [output];
}
