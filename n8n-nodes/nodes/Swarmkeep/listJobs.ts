import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';

import { asNodeError, swarmkeepRequest } from '../shared/transport';

/** Jobs asked for per page; the API may answer fewer. */
export const PAGE_SIZE = 100;

interface JobPage {
	items: IDataObject[];
	next_cursor: string | null;
}

/** GET /v1/jobs for one input item, following `next_cursor` until the limit or the last page. */
async function listJobsForItem(this: IExecuteFunctions, itemIndex: number): Promise<IDataObject[]> {
	const returnAll = this.getNodeParameter('returnAll', itemIndex, false) as boolean;
	const limit = returnAll ? Infinity : (this.getNodeParameter('limit', itemIndex, 50) as number);
	const filters = this.getNodeParameter('filters', itemIndex, {}) as { status?: string };
	const jobs: IDataObject[] = [];
	let cursor: string | null = null;
	do {
		const qs: IDataObject = { limit: Math.min(PAGE_SIZE, limit - jobs.length) };
		if (filters.status) qs.status = filters.status;
		if (cursor) qs.cursor = cursor;
		const page = (await swarmkeepRequest.call(
			this,
			'GET',
			'/v1/jobs',
			{ qs },
			itemIndex,
		)) as JobPage;
		jobs.push(...(page.items ?? []));
		cursor = page.next_cursor ?? null;
	} while (cursor && jobs.length < limit);
	return jobs.slice(0, limit);
}

/** The Get Many operation: each listed job becomes one item. */
export async function listJobs(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	const output: INodeExecutionData[] = [];
	const items = this.getInputData();
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		try {
			const jobs = await listJobsForItem.call(this, itemIndex);
			output.push(...jobs.map((json) => ({ json, pairedItem: { item: itemIndex } })));
		} catch (error) {
			if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
			output.push({ json: { error: (error as Error).message }, pairedItem: { item: itemIndex } });
		}
	}
	return [output];
}
