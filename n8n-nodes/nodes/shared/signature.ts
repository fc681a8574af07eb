import { createHmac, timingSafeEqual } from 'crypto';

/** Callbacks older (or newer) than this are replayed or forged, and are rejected. */
export const TIMESTAMP_TOLERANCE_SECONDS = 5 * 60;

/** The three Standard Webhooks headers, as received (header names are lower-case in Node). */
export interface WebhookHeaders {
	'webhook-id'?: string | string[];
	'webhook-timestamp'?: string | string[];
	'webhook-signature'?: string | string[];
}

function first(value: string | string[] | undefined): string | undefined {
	return Array.isArray(value) ? value[0] : value;
}

/** The HMAC key of a `whsec_<base64>` secret (a bare base64 secret works too). */
export function secretKey(secret: string): Buffer {
	return Buffer.from(secret.trim().replace(/^whsec_/, ''), 'base64');
}

/** The `v1,<base64>` signature of one callback, as the swarm server computes it. */
export function signWebhook(secret: string, id: string, timestamp: string, body: string): string {
	const digest = createHmac('sha256', secretKey(secret))
		.update(`${id}.${timestamp}.${body}`)
		.digest('base64');
	return `v1,${digest}`;
}

/**
 * Checks a callback against the Standard Webhooks spec: a fresh timestamp and one matching `v1`
 * signature over the raw body. Returns why it is rejected, or undefined when it is genuine.
 */
export function verifyWebhook(
	secret: string,
	headers: WebhookHeaders,
	rawBody: string,
	nowSeconds: number = Math.floor(Date.now() / 1000),
): string | undefined {
	const id = first(headers['webhook-id']);
	const timestamp = first(headers['webhook-timestamp']);
	const signatures = first(headers['webhook-signature']);
	if (!id || !timestamp || !signatures) {
		return 'missing webhook-id, webhook-timestamp or webhook-signature header';
	}
	if (!/^\d+$/.test(timestamp)) {
		return `webhook-timestamp "${timestamp}" is not a Unix time in seconds`;
	}
	const age = nowSeconds - Number(timestamp);
	if (Math.abs(age) > TIMESTAMP_TOLERANCE_SECONDS) {
		return `webhook-timestamp is ${age} s away from now (more than ${TIMESTAMP_TOLERANCE_SECONDS} s): stale or clock skew`;
	}
	const expected = Buffer.from(signWebhook(secret, id, timestamp, rawBody));
	// The header may carry several space-separated signatures (key rotation); one match is enough.
	for (const candidate of signatures.split(' ')) {
		const given = Buffer.from(candidate);
		if (given.length === expected.length && timingSafeEqual(given, expected)) {
			return undefined;
		}
	}
	return 'webhook-signature does not match: check the webhook secret in the Swarmkeep API credential';
}
