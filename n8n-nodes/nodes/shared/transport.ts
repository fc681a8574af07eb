import type {
	IDataObject,
	IExecuteFunctions,
	IExecuteSingleFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	IN8nHttpFullResponse,
	INode,
	INodeExecutionData,
	JsonObject,
} from 'n8n-workflow';
import { NodeApiError, NodeOperationError } from 'n8n-workflow';

/** The credential type every swarmkeep node authenticates with. */
export const CREDENTIAL_TYPE = 'swarmkeepApi';

/** Fields of the "Swarmkeep API" credential. */
export interface SwarmkeepCredentials {
	baseUrl: string;
	apiKey: string;
	webhookSecret?: string;
}

/** Job statuses after which a job never changes again. */
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'canceled'];

/** The API's job, as far as the nodes need to look into it; the rest passes through untouched. */
export interface Job extends IDataObject {
	id: string;
	status: string;
}

/** Everything a request needs besides the method and path. */
export interface RequestOptions {
	body?: IDataObject;
	qs?: IDataObject;
	headers?: IDataObject;
	/** Milliseconds before the request is abandoned (long polls need more than the default). */
	timeout?: number;
	/** Hints by status code that replace the default ones (which speak of jobs). */
	hints?: Record<number, string>;
}

/** What the API helpers need of n8n: programmatic operations and declarative hooks both have it. */
export type ApiContext = IExecuteFunctions | IExecuteSingleFunctions;

const STATUS_HINTS: Record<number, string> = {
	401: 'Check the API key in the Swarmkeep API credential.',
	403: 'Check the API key in the Swarmkeep API credential.',
	404: 'Check the job ID, and the base URL in the Swarmkeep API credential.',
	409: 'The job has already finished, or the idempotency key was used before with a different request.',
	422: 'The request did not pass the API validation; fix the fields named above.',
};

/** The API's `detail` in one line: a string as is, a 422 list as `loc: msg; ...`. */
export function describeDetail(body: unknown): string | undefined {
	if (typeof body === 'string') return body || undefined;
	if (!body || typeof body !== 'object') return undefined;
	const detail = (body as IDataObject).detail;
	if (typeof detail === 'string') return detail;
	if (Array.isArray(detail)) {
		return detail
			.map((entry) => {
				if (!entry || typeof entry !== 'object') return String(entry);
				const { loc, msg } = entry as IDataObject;
				const where = Array.isArray(loc) ? loc.join('.') : loc;
				return where ? `${where}: ${msg}` : String(msg);
			})
			.join('; ');
	}
	return detail === undefined ? undefined : JSON.stringify(detail);
}

/** A NodeApiError that carries the status code and the API's own message. */
export function apiError(
	node: INode,
	statusCode: number,
	body: unknown,
	itemIndex?: number,
	hints?: Record<number, string>,
): NodeApiError {
	const detail = describeDetail(body) ?? 'no error detail in the response';
	const errorBody: JsonObject =
		body && typeof body === 'object' && !Array.isArray(body) ? (body as JsonObject) : { detail };
	return new NodeApiError(node, errorBody, {
		message: `Swarmkeep API answered ${statusCode}: ${detail}`,
		description:
			hints?.[statusCode] ??
			STATUS_HINTS[statusCode] ??
			(statusCode >= 500 ? 'The swarmkeep server failed; see its logs.' : undefined),
		httpCode: String(statusCode),
		itemIndex,
	});
}

/** The error as a node error: the nodes' own errors pass through, anything else is wrapped. */
export function asNodeError(
	node: INode,
	error: unknown,
	itemIndex?: number,
): NodeApiError | NodeOperationError {
	if (error instanceof NodeApiError || error instanceof NodeOperationError) return error;
	return new NodeOperationError(node, error as Error, { itemIndex });
}

/** The base URL from the credential, without a trailing slash. */
export function baseUrlOf(credentials: SwarmkeepCredentials): string {
	return String(credentials.baseUrl ?? '').replace(/\/+$/, '');
}

/** One authenticated call; the full response whatever its status, or a NodeApiError without one. */
async function send(
	this: ApiContext,
	request: IHttpRequestOptions,
	itemIndex?: number,
): Promise<IN8nHttpFullResponse> {
	const credentials = await this.getCredentials<SwarmkeepCredentials>(
		CREDENTIAL_TYPE,
		itemIndex ?? 0,
	);
	request.baseURL = baseUrlOf(credentials);
	try {
		return (await this.helpers.httpRequestWithAuthentication.call(this, CREDENTIAL_TYPE, {
			...request,
			returnFullResponse: true,
			ignoreHttpStatusErrors: true,
		})) as IN8nHttpFullResponse;
	} catch (error) {
		// No answer at all (connection refused, timeout). n8n words the message after the error code;
		// the description says where we tried to go.
		throw new NodeApiError(this.getNode(), error as JsonObject, {
			description: `Could not reach the swarmkeep API at ${request.baseURL}${request.url} (${(error as Error).message}). Check the base URL in the Swarmkeep API credential and that the server is running.`,
			itemIndex,
		});
	}
}

/**
 * One authenticated call to the swarmkeep API. Answers below 400 return the parsed JSON body; others
 * throw a NodeApiError with the API's `detail`.
 */
export async function swarmkeepRequest(
	this: ApiContext,
	method: IHttpRequestMethods,
	path: string,
	options: RequestOptions = {},
	itemIndex?: number,
): Promise<unknown> {
	const response = await send.call(
		this,
		{
			method,
			url: path,
			headers: { Accept: 'application/json', ...options.headers },
			qs: options.qs,
			body: options.body,
			json: true,
			timeout: options.timeout,
		},
		itemIndex,
	);
	if (response.statusCode >= 400) {
		throw apiError(this.getNode(), response.statusCode, response.body, itemIndex, options.hints);
	}
	return response.body;
}

/** A body that came back as bytes (Buffer, ArrayBuffer or string) as a Buffer. */
export function asBuffer(body: unknown): Buffer {
	if (Buffer.isBuffer(body)) return body;
	if (body instanceof ArrayBuffer) return Buffer.from(body);
	if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
	if (typeof body === 'string') return Buffer.from(body);
	if (body === undefined || body === null) return Buffer.alloc(0);
	return Buffer.from(JSON.stringify(body));
}

/** An error body that came back as bytes, parsed as JSON where it is JSON. */
function parseErrorBody(body: unknown): unknown {
	const text = asBuffer(body).toString('utf8');
	try {
		return JSON.parse(text);
	} catch {
		return text;
	}
}

/** A downloaded file: its bytes and the content type the server gave. */
export interface Download {
	data: Buffer;
	contentType?: string;
}

/**
 * GET of a file from the swarmkeep API (an artifact). Answers below 400 return the bytes; others
 * throw a NodeApiError with the API's `detail`.
 */
export async function swarmkeepDownload(
	this: ApiContext,
	path: string,
	options: Pick<RequestOptions, 'hints' | 'timeout'> = {},
	itemIndex?: number,
): Promise<Download> {
	const response = await send.call(
		this,
		{
			method: 'GET',
			url: path,
			headers: { Accept: '*/*' },
			encoding: 'arraybuffer',
			json: false,
			timeout: options.timeout,
		},
		itemIndex,
	);
	if (response.statusCode >= 400) {
		throw apiError(
			this.getNode(),
			response.statusCode,
			parseErrorBody(response.body),
			itemIndex,
			options.hints,
		);
	}
	const contentType = response.headers?.['content-type'];
	return {
		data: asBuffer(response.body),
		contentType: typeof contentType === 'string' ? contentType : undefined,
	};
}

/**
 * postReceive hook for the declarative operations: the requests ignore HTTP status errors so that
 * this turns the API's `{"detail": ...}` into the node's error, like the programmatic operations do.
 */
export async function checkApiResponse(
	this: IExecuteSingleFunctions,
	items: INodeExecutionData[],
	response: IN8nHttpFullResponse,
): Promise<INodeExecutionData[]> {
	if (response.statusCode >= 400) {
		throw apiError(this.getNode(), response.statusCode, response.body, this.getItemIndex());
	}
	return items;
}
