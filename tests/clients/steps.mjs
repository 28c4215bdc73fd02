// The step runner shared by the client scripts: named steps in groups, each bounded in time, and a
// `SUMMARY {json}` line on stdout that the pytest wrappers read.

export const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS ?? 60000);
/** For one wait inside a step: shorter than the step's bound, so the error names what was awaited. */
export const WAIT_TIMEOUT_MS = STEP_TIMEOUT_MS / 2;

export const results = [];
let current = null;

/** The name of the step running now (null between steps). */
export function currentStep() {
  return current;
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Run the steps of one group in order, each within STEP_TIMEOUT_MS; after a failure the rest of the
 * group is recorded as skipped, except after a step marked `{ check: true }` (one that only looks at
 * what earlier steps saw). A step returns what it saw (JSON), which goes into the summary.
 * `onFailure(name, error)` runs after a failed step (e.g. to take a screenshot).
 */
export async function group(steps, { onFailure } = {}) {
  let failed = null;
  for (const [name, fn, { check = false } = {}] of steps) {
    if (failed) {
      results.push({ name, ok: false, skipped: true, error: `skipped: '${failed}' failed` });
      continue;
    }
    current = name;
    try {
      const saw = await withTimeout(Promise.resolve().then(fn), STEP_TIMEOUT_MS, name);
      results.push({ name, ok: true, saw: saw ?? null });
    } catch (err) {
      if (!check) failed = name;
      const status = err?.response?.status;
      results.push({ name, ok: false, error: `${status ? `HTTP ${status}: ` : ''}${err?.stack ?? err}` });
      if (onFailure) await Promise.resolve(onFailure(name, err)).catch(() => {});
    } finally {
      current = null;
    }
  }
}

/** Print the summary line and exit: 0 when every step passed. */
export function finish(extra = {}, error = null) {
  if (error) results.push({ name: 'client script', ok: false, error: String(error?.stack ?? error) });
  const ok = results.length > 0 && results.every(r => r.ok);
  process.stdout.write(`SUMMARY ${JSON.stringify({ steps: results, ...extra })}\n`, () => process.exit(ok ? 0 : 1));
}
