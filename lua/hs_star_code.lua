--[[
hs_star_code.lua: a desk phone dialled *77 + number; ask the web API to start a
hold-slayer call that rings this phone back when a person answers.

Run by the dialplan (freeswitch/dialplan/desk.xml, extension hs_star_code):
  <action application="lua" data="$${hs_lua_dir}/hs_star_code.lua $1"/>

Arguments:
  argv[1]  the digits dialled after the star code: 10 digits (NANP), 1 + 10
           digits, 011 + international, or country code + number.
Reads:
  globals  hs_api_url (HS_API_URL), hs_service_key (SERVICE_KEY),
           hs_tts_engine / hs_tts_voice (spoken result; tones without them)
  channel  user_name, else sip_from_user, else caller_id_number: the extension
           to ring back (sent as transfer_to)
Does:
  POST <hs_api_url>/api/calls/hold-slayer with Authorization: Bearer <key> and
  {"number": "+E164", "intent": ..., "transfer_to": "<ext>"} through mod_curl's
  `curl` API, then tells the caller whether the call was queued.
Sets:
  hs_star_code_status  HTTP status (0 when the API was unreachable, "invalid")
  hs_star_code_call_id the new call's id when queued
Needs: mod_lua, mod_curl; mod_flite for spoken results.
]]

local util = require("hs_util")

local INTENT = "speak with a representative"
local TONE_OK = "tone_stream://%(150,50,660);%(150,50,880);%(300,0,1100)"
local TONE_FAIL = "tone_stream://%(250,250,480,620);loops=3"
local CONNECT_TIMEOUT_S = 3
local TIMEOUT_S = 10

local function finish(status, text, tone)
  session:setVariable("hs_star_code_status", tostring(status))
  if session:ready() then
    util.say(session, text, tone)
  end
end

if not session or not session:ready() then
  return
end

local digits = argv[1] or ""
if not string.match(digits, "^%d+$") or #digits < 3 or #digits > 15 then
  util.log("WARNING", "star code: not a phone number: %s", digits)
  finish("invalid", "That is not a phone number.", TONE_FAIL)
  return
end

local ext = ""
for _, var in ipairs({ "user_name", "sip_from_user", "caller_id_number" }) do
  local v = session:getVariable(var)
  if v and string.match(v, "^%d+$") then
    ext = v
    break
  end
end
if ext == "" then
  util.log("WARNING", "star code: cannot tell which desk phone called")
  finish("invalid", "This phone has no extension.", TONE_FAIL)
  return
end

local base = util.global("hs_api_url")
local key = util.global("hs_service_key")
-- the key goes inside a single-quoted mod_curl argument: no quotes, spaces or backslashes
if base == "" or key == "" or not string.match(key, "^[%w%._~%+/=:@%-]+$") then
  util.log("ERR", "star code: hs_api_url or hs_service_key missing or malformed")
  finish(0, "Hold Slayer is not configured.", TONE_FAIL)
  return
end

local number = util.e164(digits)
local body = util.json_object({ "number", "intent", "transfer_to" },
  { number = number, intent = INTENT, transfer_to = ext })
local args = table.concat({
  base .. "/api/calls/hold-slayer",
  "json",
  "content-type", "application/json",
  "connect-timeout", tostring(CONNECT_TIMEOUT_S),
  "timeout", tostring(TIMEOUT_S),
  "append_headers", "'Authorization: Bearer " .. key .. "'",
  "post", util.url_encode(body),
}, " ")

util.log("INFO", "star code: extension %s asks for a hold-slayer call to %s", ext, number)
local reply = freeswitch.API():execute("curl", args)
local result = util.json_decode(reply or "")
local status = (type(result) == "table" and tonumber(result.status_code)) or 0

local payload = {}
if type(result) == "table" and type(result.body) == "string" then
  payload = util.json_decode(result.body) or {}
end

if status >= 200 and status < 300 then
  local call_id = (type(payload) == "table" and (payload.call_id or payload.id)) or ""
  session:setVariable("hs_star_code_call_id", tostring(call_id))
  util.log("INFO", "star code: call %s queued for extension %s", tostring(call_id), ext)
  finish(status, "Hold Slayer is calling for you. Hang up; this phone rings when a person answers.", TONE_OK)
  return
end

-- the API's JSON error: {"error": {"code", "message"}} or {"message": ...}
local message = ""
if type(payload) == "table" then
  if type(payload.error) == "table" and type(payload.error.message) == "string" then
    message = payload.error.message
  elseif type(payload.message) == "string" then
    message = payload.message
  elseif type(payload.error) == "string" then
    message = payload.error
  end
end
if status == 0 then
  message = "Hold Slayer cannot be reached right now."
elseif status == 401 or status == 403 then
  message = "Hold Slayer refused the phone system's key."
elseif message == "" then
  message = "Hold Slayer could not start that call."
end
util.log("WARNING", "star code: request for extension %s failed with HTTP %d", ext, status)
finish(status, message, TONE_FAIL)
