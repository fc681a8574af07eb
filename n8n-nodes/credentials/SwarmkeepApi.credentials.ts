import type {
	IAuthenticateGeneric,
	Icon,
	ICredentialTestRequest,
	ICredentialType,
	INodeProperties,
} from 'n8n-workflow';

/** API key and callback secret of one swarmkeep server. */
// The package README documents this credential; there is no public docs site to point at yet.
// eslint-disable-next-line n8n-nodes-base/cred-class-field-documentation-url-missing
export class SwarmkeepApi implements ICredentialType {
	name = 'swarmkeepApi';

	displayName = 'Swarmkeep API';

	icon: Icon = { light: 'file:swarmkeep.svg', dark: 'file:swarmkeep.dark.svg' };

	properties: INodeProperties[] = [
		{
			displayName: 'Base URL',
			name: 'baseUrl',
			type: 'string',
			default: 'http://127.0.0.1:8080',
			required: true,
			description: 'Where the swarmkeep HTTP API listens, without /v1',
		},
		{
			displayName: 'API Key',
			name: 'apiKey',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			required: true,
		},
		{
			displayName: 'Webhook Secret',
			name: 'webhookSecret',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			placeholder: 'whsec_...',
			description:
				'The secret the server signs its completion callbacks with. When set, callbacks with a missing, stale or wrong signature are rejected.',
		},
	];

	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: {
				Authorization: '=Bearer {{$credentials.apiKey}}',
			},
		},
	};

	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/+$/, "")}}',
			url: '/v1/jobs',
			method: 'GET',
			qs: { limit: 1 },
		},
	};
}
