/** Credentials kept out of messages, bodies, headers and logs: by value (the secrets we hold) and by form. */
/**
 * Replaces every credential in a text by [redacted]: each secret as it is, URL-encoded and base64-encoded (an
 * upstream may echo `Authorization: Basic <base64>`), and any `Bearer`/`Basic` credential or `token=`/`key=`
 * query value whatever it is.
 */
export function redactSecrets(text: string, secrets: string[]): string {
  let out = text;
  for (const form of secretForms(secrets)) if (out.includes(form)) out = out.split(form).join('[redacted]');
  return redactCredentials(out);
}

/** Each secret as it is, URL-encoded and base64-encoded (padded or not), longest first; none shorter than 4 characters. */
export function secretForms(secrets: string[]): string[] {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (!s || s.length < 4) continue;
    const b64 = Buffer.from(s).toString('base64');
    for (const f of [s, encodeURIComponent(s), b64, b64.replace(/=+$/, '')]) if (f.length >= 4) forms.add(f);
  }
  return [...forms].sort((a, b) => b.length - a.length);
}

const CREDENTIAL_QUERY = /([?&;](?:access[_-]?token|api[_-]?key|apikey|key|token|secret|password|passwd|pwd|auth|signature|sig|client[_-]?secret)=)[^&#\s"']*/gi;

/** Credentials by their form: `Bearer X`, `Basic X`, `user:password@` in a URL, and credential-named query values. */
export function redactCredentials(text: string): string {
  return text
    .replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{4,}/g, '$1 [redacted]')
    .replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^@/\s"']+@/gi, '$1[redacted]@')
    .replace(CREDENTIAL_QUERY, '$1[redacted]');
}
