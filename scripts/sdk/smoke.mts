// Smoke test of the generated TypeScript types with openapi-fetch (scripts/sdk-clients.sh):
// compiled with `tsc --strict`, run with node against the demo. TOKEN, BASE and FWD_BASE
// come from the environment; __VERSION__ is replaced by the release.
import createClient from "openapi-fetch";
import type { paths, components } from "./schema.js";

type Problem = components["schemas"]["Problem"];
const release = "__VERSION__" as const;
const env = (k: string): string => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
let passed = 0;
function check(what: string, ok: boolean, detail: unknown = ""): void {
  if (!ok) {
    console.error(`typescript smoke (${release}): ${what} FAILED`, detail);
    process.exit(1);
  }
  passed++;
}

// The Version header is set once on the client; the types still ask for it per call
// (it is required), which `header` below satisfies.
const headers = { Authorization: `Bearer ${env("TOKEN")}`, Version: release };
const header = { Version: release } as const;
const api = createClient<paths>({ baseUrl: env("BASE"), headers });

const tag = `sdk-ts-${crypto.randomUUID().slice(0, 12)}`;
const email = `${tag}-0@example.com`;
const key = crypto.randomUUID();
const created = await api.POST("/v1/contacts", {
  params: { header: { ...header, "Idempotency-Key": key } },
  body: { email, first_name: "Ts", last_name: "Smoke", phone: "+1-555-0198" },
});
check("create 201", created.response.status === 201 && created.data !== undefined, created.error);
const id = created.data!.data.id;
const replay = await api.POST("/v1/contacts", {
  params: { header: { ...header, "Idempotency-Key": key } },
  body: { email, first_name: "Ts", last_name: "Smoke", phone: "+1-555-0198" },
});
check("replay", replay.data?.data.id === id && replay.response.headers.get("idempotent-replayed") === "true");

const got = await api.GET("/v1/contacts/{id}", { params: { header, path: { id } } });
check("get 200", got.data?.data.email === email, got.error);

const others: string[] = [];
for (const i of [1, 2]) {
  const r = await api.POST("/v1/contacts", {
    params: { header },
    body: { email: `${tag}-${i}@example.com`, first_name: "Ts" },
  });
  check("create another", r.data !== undefined, r.error);
  others.push(r.data!.data.id);
}
// One page of this run's contacts (a function: typed once, whatever the cursor).
const searchPage = (cursor: string | null) =>
  api.POST("/v1/contacts/search", {
    params: { header },
    body: cursor
      ? { cursor, limit: 1 }
      : { filters: [{ field: "email", operator: "contains", value: tag }], limit: 1 },
  });
let cursor: string | null = null;
let pages = 0;
const ids: string[] = [];
do {
  const page = await searchPage(cursor);
  check("search 200", page.data !== undefined, page.error);
  const data: components["schemas"]["ContactPage"] = page.data!;
  ids.push(...data.data.map((c) => c.id));
  cursor = data.meta.cursor;
  pages++;
  check("bounded paging", pages < 500);
} while (cursor);
check("search pages", pages >= 3 && [id, ...others].every((x) => ids.includes(x)) && ids.length === 3, { pages, ids });
for (const o of others) {
  const d = await api.DELETE("/v1/contacts/{id}", { params: { header, path: { id: o } } });
  check("delete another", d.response.status === 204);
}
console.log(`typescript: search followed ${pages} pages, ${ids.length} contacts`);

const patched = await api.PATCH("/v1/contacts/{id}", {
  params: { header, path: { id } },
  body: { phone: null },
});
check("patch clears phone", patched.data?.data.phone === null, patched.error);

const gone = await api.DELETE("/v1/contacts/{id}", { params: { header, path: { id } } });
check("delete 204", gone.response.status === 204);
const missing = await api.GET("/v1/contacts/{id}", { params: { header, path: { id } } });
const p404: Problem | undefined = missing.error;
check("404 parsed", missing.response.status === 404 && p404?.status === 404 && p404.type.endsWith("/not-found"), p404);

const bad = await api.POST("/v1/contacts/search", { params: { header }, body: { limit: 1000 } });
const p400: Problem | undefined = bad.error;
check("400 parsed", bad.response.status === 400 && p400?.errors?.[0]?.pointer === "/limit", p400);

// Forward compatibility: the fixture edge answers a value and a member the types don't know.
const fwd = createClient<paths>({ baseUrl: env("FWD_BASE"), headers });
const f = await fwd.POST("/v1/contacts/search", {
  params: { header },
  body: { filters: [{ field: "email", operator: "contains", value: "alan.turing" }] },
});
const stage: string | null | undefined = f.data?.data[0]?.lifecycle_stage;
check("unknown enum value reads", stage === "customer_success", f.data ?? f.error);
console.log(`typescript (${release}): ${passed} checks passed`);
