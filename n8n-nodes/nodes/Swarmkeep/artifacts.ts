import type {
	IBinaryKeyData,
	IDataObject,
	IExecuteSingleFunctions,
	INodeExecutionData,
} from 'n8n-workflow';
import { NodeOperationError } from 'n8n-workflow';

import type { ApiContext, SwarmkeepCredentials } from '../shared/transport';
import { baseUrlOf, CREDENTIAL_TYPE, swarmkeepDownload } from '../shared/transport';

/** One entry of a finished job's `result.artifacts`. */
export interface Artifact extends IDataObject {
	name: string;
	subtask_id?: string;
	size?: number;
	content_type?: string;
	url?: string;
}

/** Artifact downloads may be large; they get more time than a JSON call. */
const DOWNLOAD_TIMEOUT_MS = 5 * 60_000;

const ARTIFACT_HINTS: Record<number, string> = {
	404: 'The job lists an artifact the server no longer has (its file may have been cleaned up). Turn off Download Artifacts to get the job without it.',
};

/** The binary property the artifact at `index` of `result.artifacts` is attached under. */
export function artifactKey(index: number): string {
	return `artifact_${index}`;
}

/** The artifacts a job's result lists; none while the job has no result. */
export function artifactsOf(job: IDataObject): Artifact[] {
	const result = job.result as IDataObject | null | undefined;
	const artifacts = result?.artifacts;
	return Array.isArray(artifacts) ? (artifacts as Artifact[]) : [];
}

/** Re-encodes each path segment, so names with spaces or `#` reach the server as they are named. */
function encodePath(path: string): string {
	return path
		.split('/')
		.map((segment) => {
			let decoded = segment;
			try {
				decoded = decodeURIComponent(segment);
			} catch {
				// a bare `%` in a name: it was never encoded
			}
			return encodeURIComponent(decoded);
		})
		.join('/');
}

/**
 * Where to GET an artifact, relative to the base URL. The API gives a path (`/v1/jobs/{id}/artifacts/{name}`);
 * an absolute URL is followed only on the credential's own server, so the API key never goes elsewhere.
 */
export function artifactPath(baseUrl: string, jobId: string, artifact: Artifact): string {
	const url = typeof artifact.url === 'string' ? artifact.url.trim() : '';
	if (!url) {
		return `/v1/jobs/${encodeURIComponent(jobId)}/artifacts/${encodePath(String(artifact.name ?? ''))}`;
	}
	if (/^[a-z][a-z0-9+.-]*:/i.test(url) || url.startsWith('//')) {
		if (!url.startsWith(`${baseUrl}/`)) {
			throw new Error(
				`Artifact ${artifact.name} is at ${url}, which is not on the swarmkeep server ${baseUrl}; not sending the API key there`,
			);
		}
		return encodePath(url.slice(baseUrl.length));
	}
	return encodePath(url.startsWith('/') ? url : `/${url}`);
}

/** The last segment of an artifact's name, as the file name of its binary data. */
function fileNameOf(artifact: Artifact, index: number): string {
	const name = String(artifact.name ?? '');
	return name.split('/').filter(Boolean).pop() ?? artifactKey(index);
}

/**
 * Downloads every artifact of a finished job and returns them as binary data, `artifact_0` for
 * `result.artifacts[0]` and so on. A job without artifacts gives an empty object.
 */
export async function downloadArtifacts(
	this: ApiContext,
	job: IDataObject,
	itemIndex: number,
): Promise<IBinaryKeyData> {
	const artifacts = artifactsOf(job);
	const binary: IBinaryKeyData = {};
	if (artifacts.length === 0) return binary;
	const credentials = await this.getCredentials<SwarmkeepCredentials>(CREDENTIAL_TYPE, itemIndex);
	const baseUrl = baseUrlOf(credentials);
	for (let index = 0; index < artifacts.length; index++) {
		const artifact = artifacts[index];
		let path: string;
		try {
			path = artifactPath(baseUrl, String(job.id), artifact);
		} catch (error) {
			throw new NodeOperationError(this.getNode(), error as Error, { itemIndex });
		}
		const download = await swarmkeepDownload.call(
			this,
			path,
			{ hints: ARTIFACT_HINTS, timeout: DOWNLOAD_TIMEOUT_MS },
			itemIndex,
		);
		const mimeType =
			artifact.content_type || download.contentType?.split(';')[0].trim() || undefined;
		binary[artifactKey(index)] = await this.helpers.prepareBinaryData(
			download.data,
			fileNameOf(artifact, index),
			mimeType,
		);
	}
	return binary;
}

/** An output item for a job, with its artifacts as binary data when `download` is on. */
export async function jobItem(
	this: ApiContext,
	job: IDataObject,
	itemIndex: number,
	download: boolean,
): Promise<INodeExecutionData> {
	const item: INodeExecutionData = { json: job, pairedItem: { item: itemIndex } };
	if (download) {
		const binary = await downloadArtifacts.call(this, job, itemIndex);
		if (Object.keys(binary).length > 0) item.binary = binary;
	}
	return item;
}

/** postReceive hook of the declarative Get: attaches the artifacts when Download Artifacts is on. */
export async function attachArtifacts(
	this: IExecuteSingleFunctions,
	items: INodeExecutionData[],
): Promise<INodeExecutionData[]> {
	const download = this.getNodeParameter('options.downloadArtifacts', false) as boolean;
	if (!download) return items;
	const itemIndex = this.getItemIndex();
	for (const item of items) {
		const binary = await downloadArtifacts.call(this, item.json, itemIndex);
		if (Object.keys(binary).length > 0) item.binary = { ...item.binary, ...binary };
	}
	return items;
}
