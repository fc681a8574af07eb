// Fake n8n contexts for the unit tests: the HTTP layer is replaced at
// this.helpers.httpRequestWithAuthentication, everything else is plain data.
import type {
	IDataObject,
	IExecuteFunctions,
	IExecuteSingleFunctions,
	IHttpRequestOptions,
	INodeExecutionData,
	IWebhookFunctions,
} from 'n8n-workflow';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

// The built nodes require n8n-workflow's CommonJS build; the tests must compare against the same
// classes (its ESM build is also not loadable by Node as published).
export const workflow = createRequire(import.meta.url)(
	'n8n-workflow',
) as typeof import('n8n-workflow');

export const NODE = {
	id: 'node-1',
	name: 'Swarmkeep',
	type: 'n8n-nodes-swarmkeep.swarmkeep',
	typeVersion: 1,
	position: [0, 0] as [number, number],
	parameters: {},
};

export const CREDENTIALS = {
	baseUrl: 'http://swarm.test:8080/',
	apiKey: 'sk-test',
	webhookSecret: '',
};

/** One recorded request and what the fake server answered. */
export interface Call {
	credentialType: string;
	request: IHttpRequestOptions;
}

/** What the fake server answers: a status, a body and optionally headers. */
export interface Reply {
	status: number;
	body: unknown;
	headers?: Record<string, string>;
}

/** A canned answer: a reply, or a function of the request. */
export type Answer = Reply | ((request: IHttpRequestOptions) => Reply);

/** One binary property as the fake prepareBinaryData makes it (like n8n's, data base64). */
export interface FakeBinary {
	data: string;
	fileName?: string;
	mimeType?: string;
	fileSize: string;
}

/** A job as the API returns it, with the given fields overridden. */
export function job(overrides: IDataObject = {}): IDataObject {
	return {
		id: 'job-1',
		status: 'queued',
		task: 'write a haiku',
		metadata: {},
		created_at: '2026-01-01T00:00:00Z',
		started_at: null,
		finished_at: null,
		progress: { subtasks_total: 0, pending: 0, running: 0, done: 0, failed: 0, retries: 0 },
		subtasks: [],
		result: null,
		error: null,
		links: { self: '/v1/jobs/job-1', cancel: '/v1/jobs/job-1/cancel' },
		...overrides,
	};
}

interface ExecuteOptions {
	/** Parameter values; a function of the item index gives per-item values. */
	parameters: Record<string, unknown>;
	items?: INodeExecutionData[];
	answers?: Answer[];
	continueOnFail?: boolean;
	resumeUrl?: string;
}

/** An IExecuteFunctions over the given items, parameters and canned HTTP answers. */
export function executeContext(options: ExecuteOptions) {
	const calls: Call[] = [];
	const waits: Date[] = [];
	const answers = [...(options.answers ?? [])];
	const items = options.items ?? [{ json: {} }];
	const context = {
		getNode: () => NODE,
		getInputData: () => items,
		getNodeParameter(name: string, itemIndex: number, fallback?: unknown) {
			if (!(name in options.parameters)) return fallback;
			const value = options.parameters[name];
			return typeof value === 'function' ? value(itemIndex) : value;
		},
		getCredentials: async () => ({ ...CREDENTIALS }),
		continueOnFail: () => options.continueOnFail ?? false,
		getExecutionCancelSignal: () => undefined,
		evaluateExpression: (expression: string) => {
			if (expression.includes('$execution.resumeUrl')) return options.resumeUrl ?? '';
			throw new Error(`unexpected expression ${expression}`);
		},
		putExecutionToWait: async (waitTill: Date) => {
			waits.push(waitTill);
		},
		helpers: fakeHelpers(calls, answers),
	};
	return { context: context as unknown as IExecuteFunctions, calls, waits };
}

/** httpRequestWithAuthentication over canned answers (recording each call) and prepareBinaryData. */
export function fakeHelpers(calls: Call[], answers: Answer[]) {
	return {
		async httpRequestWithAuthentication(credentialType: string, request: IHttpRequestOptions) {
			calls.push({ credentialType, request });
			const answer = answers.shift();
			if (!answer) throw new Error(`no answer left for ${request.method} ${request.url}`);
			const { status, body, headers } = typeof answer === 'function' ? answer(request) : answer;
			return { statusCode: status, headers: headers ?? {}, body };
		},
		async prepareBinaryData(
			data: Buffer,
			fileName?: string,
			mimeType?: string,
		): Promise<FakeBinary> {
			assert.ok(Buffer.isBuffer(data), 'prepareBinaryData gets a Buffer');
			return {
				data: data.toString('base64'),
				fileName,
				mimeType,
				fileSize: `${data.length} B`,
			};
		},
	};
}

/** An IExecuteSingleFunctions (a declarative request's postReceive hook) for item `itemIndex`. */
export function executeSingleContext(options: {
	parameters: Record<string, unknown>;
	answers?: Answer[];
	itemIndex?: number;
}) {
	const calls: Call[] = [];
	const answers = [...(options.answers ?? [])];
	const context = {
		getNode: () => NODE,
		getItemIndex: () => options.itemIndex ?? 0,
		getNodeParameter(name: string, fallback?: unknown) {
			let value: unknown = options.parameters;
			for (const part of name.split('.')) {
				if (!value || typeof value !== 'object' || !(part in value)) return fallback;
				value = (value as Record<string, unknown>)[part];
			}
			return value;
		},
		getCredentials: async () => ({ ...CREDENTIALS }),
		helpers: fakeHelpers(calls, answers),
	};
	return { context: context as unknown as IExecuteSingleFunctions, calls };
}

interface WebhookOptions {
	parameters?: IDataObject;
	headers?: IDataObject;
	body: IDataObject;
	rawBody?: string;
	webhookSecret?: string;
}

/** An IWebhookFunctions for one incoming callback; `response` records what was answered directly. */
export function webhookContext(options: WebhookOptions) {
	const response: { status?: number; body?: unknown } = {};
	const raw = options.rawBody ?? JSON.stringify(options.body);
	const context = {
		getNode: () => NODE,
		getNodeParameter: (name: string, fallback?: unknown) =>
			options.parameters && name in options.parameters ? options.parameters[name] : fallback,
		getCredentials: async () => ({ ...CREDENTIALS, webhookSecret: options.webhookSecret ?? '' }),
		getHeaderData: () => options.headers ?? {},
		getBodyData: () => options.body,
		getRequestObject: () => ({ rawBody: Buffer.from(raw) }),
		getResponseObject: () => ({
			status(code: number) {
				response.status = code;
				return this;
			},
			json(body: unknown) {
				response.body = body;
				return this;
			},
		}),
	};
	return { context: context as unknown as IWebhookFunctions, response };
}
