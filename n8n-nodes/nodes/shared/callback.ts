import type { IDataObject, IWebhookFunctions } from 'n8n-workflow';

import type { WebhookHeaders } from './signature';
import { verifyWebhook } from './signature';
import type { SwarmkeepCredentials } from './transport';
import { CREDENTIAL_TYPE } from './transport';

/** Event types that say a job has finished; its body's `data` is the final job. */
export const JOB_EVENT_TYPES = ['job.succeeded', 'job.failed', 'job.canceled'];

/** Every event type the server sends on a callback URL. */
export const EVENT_TYPES = [...JOB_EVENT_TYPES, 'subtask.finished'];

/** The body of a callback: `{"type", "timestamp", "data"}`. */
export interface CallbackEvent extends IDataObject {
	type: string;
	timestamp?: string;
	data?: IDataObject;
}

/** A callback that passed the checks, or why it did not. */
export type ReceivedCallback =
	| { event: CallbackEvent; rejection?: undefined }
	| { event?: undefined; rejection: { status: number; detail: string } };

/** The request body exactly as sent: the signature covers these bytes, not a re-serialisation. */
function rawBodyOf(context: IWebhookFunctions): string {
	const request = context.getRequestObject() as { rawBody?: Buffer | string };
	if (request.rawBody !== undefined) return request.rawBody.toString();
	return JSON.stringify(context.getBodyData());
}

/**
 * Reads a callback request: verifies its Standard Webhooks signature with the credential's
 * webhook secret (when set, or rejects it when `requireSecret`), and checks the body's shape.
 */
export async function receiveCallback(
	this: IWebhookFunctions,
	requireSecret: boolean,
): Promise<ReceivedCallback> {
	const credentials = await this.getCredentials<SwarmkeepCredentials>(CREDENTIAL_TYPE);
	const secret = credentials.webhookSecret?.trim();
	if (secret) {
		const problem = verifyWebhook(secret, this.getHeaderData() as WebhookHeaders, rawBodyOf(this));
		if (problem) return { rejection: { status: 401, detail: `Callback rejected: ${problem}` } };
	} else if (requireSecret) {
		return {
			rejection: {
				status: 401,
				detail:
					'Callback rejected: the Swarmkeep API credential has no webhook secret to verify it with. Set it to the whsec_ secret of the API key, or turn off Verify Signature.',
			},
		};
	}
	const body = this.getBodyData() as CallbackEvent;
	if (!body || typeof body.type !== 'string') {
		return {
			rejection: { status: 400, detail: 'Callback rejected: the body has no event "type"' },
		};
	}
	return { event: body };
}

/** Answers a rejected callback with the API's error shape, `{"detail": ...}`. */
export function reject(
	context: IWebhookFunctions,
	rejection: { status: number; detail: string },
): void {
	context.getResponseObject().status(rejection.status).json({ detail: rejection.detail });
}
