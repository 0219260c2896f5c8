-- An OpenResty-style gateway doing the edge's GET-one-contact job, the way a Kong plugin
-- chain would: the load benchmark's peer (benches/load/run.sh, target `peer`).
--
-- Per request: one `Authorization: Bearer` JWT, Ed25519-verified through libcrypto
-- (LuaJIT FFI) unless its token is in the per-worker cache (never past `exp`); issuer,
-- audience, typ and scope checked; the user's IAM permissions fetched from `iam` and
-- cached 30 s in a shared dict; a per-(tenant, app) fixed-window rate limit in a shared
-- dict; the upstream call with the trust headers (a subrequest to a keepalive pool);
-- the crm-core record rewritten with cjson into the public snake_case envelope. What it
-- does not do that the edge does: sealed ids (plain `con_<n>`), versions, the access
-- log, problem+json documents with trace ids, the head guard.
local ffi = require "ffi"
local cjson = require "cjson.safe"
local lrucache = require "resty.lrucache"
local b64 = require "ngx.base64"

ffi.cdef [[
typedef struct evp_pkey_st EVP_PKEY;
typedef struct evp_md_ctx_st EVP_MD_CTX;
EVP_PKEY *EVP_PKEY_new_raw_public_key(int type, void *e, const unsigned char *pub, size_t len);
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
int EVP_DigestVerifyInit(EVP_MD_CTX *ctx, void **pctx, const void *type, void *e, EVP_PKEY *pkey);
int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sig, size_t siglen,
                     const unsigned char *tbs, size_t tbslen);
]]
local crypto = ffi.load("crypto")
local NID_ED25519 = 1087

local M = {}
local key, issuer, audience
local tokens -- per-worker cache: token → claims
local QUOTA, WINDOW = 100000000, 3600
local STAGES = { [1] = "subscriber", [2] = "lead", [3] = "opportunity", [4] = "customer", [9] = "other" }

function M.init(jwk_x, iss, aud)
    local raw = b64.decode_base64url(jwk_x)
    key = crypto.EVP_PKEY_new_raw_public_key(NID_ED25519, nil, raw, #raw)
    assert(key ~= nil, "bad Ed25519 key")
    issuer, audience = iss, aud
end

function M.init_worker()
    tokens = lrucache.new(10000)
end

local function deny(status, detail)
    ngx.status = status
    ngx.header["content-type"] = "application/problem+json"
    ngx.say(cjson.encode({ status = status, detail = detail }))
    return ngx.exit(status)
end

local function verify(token)
    local h, p, s = token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
    if not h then return nil, "malformed" end
    local header = cjson.decode(b64.decode_base64url(h) or "")
    if type(header) ~= "table" or header.alg ~= "EdDSA" or header.typ ~= "at+jwt" then
        return nil, "header"
    end
    local claims = cjson.decode(b64.decode_base64url(p) or "")
    if type(claims) ~= "table" then return nil, "claims" end
    local now = ngx.time()
    if claims.iss ~= issuer or claims.aud ~= audience or type(claims.exp) ~= "number"
        or claims.exp < now or not claims.sub or not claims.tid or not claims.client_id then
        return nil, "claims"
    end
    local sig = b64.decode_base64url(s)
    if not sig or #sig ~= 64 then return nil, "signature" end
    local signed = h .. "." .. p
    local ctx = crypto.EVP_MD_CTX_new()
    local ok = crypto.EVP_DigestVerifyInit(ctx, nil, nil, nil, key) == 1
        and crypto.EVP_DigestVerify(ctx, sig, #sig, signed, #signed) == 1
    crypto.EVP_MD_CTX_free(ctx)
    if not ok then return nil, "signature" end
    claims.scopes = {}
    for sc in (claims.scope or ""):gmatch("%S+") do claims.scopes[sc] = true end
    return claims
end

local function timestamp(ms)
    if type(ms) ~= "number" then return cjson.null end
    local s = math.floor(ms / 1000)
    return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", ms % 1000)
end

local function opt(v)
    if v == nil then return cjson.null end
    return v
end

function M.get_contact(id)
    local auth = ngx.var.http_authorization
    local token = auth and auth:match("^[Bb]earer (.+)$")
    if not token then return deny(401, "A bearer token is required") end
    local claims = tokens:get(token)
    if not claims or claims.exp < ngx.time() then
        local why
        claims, why = verify(token)
        if not claims then return deny(401, "invalid token: " .. why) end
        tokens:set(token, claims, claims.exp - ngx.time())
    end
    if not claims.scopes["contact.read"] then return deny(403, "insufficient scope") end
    local tenant, user = tostring(claims.tid), tostring(claims.sub)
    -- The trust headers, read by the internal upstream locations (subrequests share the
    -- request's headers; nothing else of the client's is forwarded).
    ngx.req.set_header("X-PC-Tenant", tenant)
    ngx.req.set_header("X-PC-User", user)
    ngx.req.set_header("X-PC-Request-Id", ngx.var.request_id)

    -- rate limit per (tenant, app), fixed window
    local rl = ngx.shared.ratelimit
    local window = math.floor(ngx.time() / WINDOW)
    local used = rl:incr(tenant .. ":" .. claims.client_id .. ":" .. window, 1, 0, WINDOW)
    if used and used > QUOTA then return deny(429, "rate limited") end

    -- IAM permission, cached 30 s
    local perms = ngx.shared.perms
    local pk = tenant .. ":" .. user
    local list = perms:get(pk)
    if not list then
        local r = ngx.location.capture("/_iam/iam/v2/users/" .. user .. "/permissions")
        if r.status ~= 200 then return deny(503, "permissions unavailable") end
        local v = cjson.decode(r.body)
        if type(v) ~= "table" or type(v.permissions) ~= "table" then
            return deny(502, "permissions garbage")
        end
        list = " " .. table.concat(v.permissions, " ") .. " "
        perms:set(pk, list, 30)
    end
    if not list:find(" contacts:view ", 1, true) then return deny(403, "permission denied") end

    local r = ngx.location.capture("/_crm/api/v3/contacts/" .. id)
    if r.status == 404 then return deny(404, "not found") end
    if r.status ~= 200 then return deny(502, "upstream error") end
    local c = cjson.decode(r.body)
    if type(c) ~= "table" then return deny(502, "upstream garbage") end
    local out = {
        data = {
            id = "con_" .. tostring(c.contactId),
            first_name = opt(c.firstName),
            last_name = opt(c.lastName),
            email = opt(c.emailAddress),
            phone = opt(c.phoneNumber),
            job_title = opt(c.jobTitle),
            company_id = c.companyId and ("cmp_" .. tostring(c.companyId)) or cjson.null,
            owner_id = c.ownerUserId and ("usr_" .. tostring(c.ownerUserId)) or cjson.null,
            lifecycle_stage = STAGES[c.lifecycleStage] or cjson.null,
            created_at = timestamp(c.createdAt),
            updated_at = timestamp(c.modifiedAt),
        },
    }
    local body = cjson.encode(out)
    ngx.header["content-type"] = "application/json"
    ngx.header["cache-control"] = "no-store"
    ngx.header["version"] = "2026-11-01"
    ngx.header["content-length"] = #body
    ngx.print(body)
end

return M
