import type { IDataObject, IExecuteFunctions, INodeExecutionData } from 'n8n-workflow';

import { asNodeError, swarmkeepRequest } from '../shared/transport';

/** Items asked for per page; the API may answer fewer. */
export const PAGE_SIZE = 100;

interface Page {
	items: IDataObject[];
	next_cursor: string | null;
}

/**
 * GETs a cursor-paged list (`{"items", "next_cursor"}`) for one input item, following `next_cursor`
 * until Limit (or, with Return All, the last page).
 */
export async function listPages(
	this: IExecuteFunctions,
	path: string,
	itemIndex: number,
	filters: IDataObject = {},
): Promise<IDataObject[]> {
	const returnAll = this.getNodeParameter('returnAll', itemIndex, false) as boolean;
	const limit = returnAll ? Infinity : (this.getNodeParameter('limit', itemIndex, 50) as number);
	const results: IDataObject[] = [];
	let cursor: string | null = null;
	do {
		const qs: IDataObject = { limit: Math.min(PAGE_SIZE, limit - results.length), ...filters };
		if (cursor) qs.cursor = cursor;
		const page = (await swarmkeepRequest.call(this, 'GET', path, { qs }, itemIndex)) as Page;
		results.push(...(page.items ?? []));
		cursor = page.next_cursor ?? null;
	} while (cursor && results.length < limit);
	return results.slice(0, limit);
}

/** Runs `list` once per input item; each listed object becomes one item paired with its input. */
export async function listForEachItem(
	this: IExecuteFunctions,
	list: (this: IExecuteFunctions, itemIndex: number) => Promise<IDataObject[]>,
): Promise<INodeExecutionData[][]> {
	const output: INodeExecutionData[] = [];
	const items = this.getInputData();
	for (let itemIndex = 0; itemIndex < items.length; itemIndex++) {
		try {
			const listed = await list.call(this, itemIndex);
			output.push(...listed.map((json) => ({ json, pairedItem: { item: itemIndex } })));
		} catch (error) {
			if (!this.continueOnFail()) throw asNodeError(this.getNode(), error, itemIndex);
			output.push({ json: { error: (error as Error).message }, pairedItem: { item: itemIndex } });
		}
	}
	return [output];
}

/** GET /v1/jobs for one input item, with the Status filter. */
async function listJobsForItem(this: IExecuteFunctions, itemIndex: number): Promise<IDataObject[]> {
	const filters = this.getNodeParameter('filters', itemIndex, {}) as { status?: string };
	return await listPages.call(
		this,
		'/v1/jobs',
		itemIndex,
		filters.status ? { status: filters.status } : {},
	);
}

/** The Job Get Many operation: each listed job becomes one item. */
export async function listJobs(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
	return await listForEachItem.call(this, listJobsForItem);
}
