--[[
hs_whisper.lua: screening on the desk-phone leg before the worker bridges it:
"<company> is on the line. Press 1 to accept, 2 to decline."

Run on the answered desk leg, either from the dialplan (the worker originates
the desk leg to extension hs_whisper in hold_slayer_desk, which runs this and
then parks) or with `uuid_broadcast <desk-uuid> lua::<path>/hs_whisper.lua aleg`.

Arguments (all optional):
  argv[1]  tries, default 2
  argv[2]  timeout per try in milliseconds, default 5000
Reads (channel variables the worker sets when it originates the leg):
  hs_company       name spoken to the user (default "A company"); in an
                   originate string write spaces as \s
  hs_whisper_file  a prompt file to play instead of text-to-speech
  hs_call_id       copied into the event
Sets:
  hs_whisper_result  accepted | declined | timeout
Fires:
  CUSTOM hold_slayer::whisper with Unique-ID, hs_call_id, Whisper-Result.
Then: accepted returns to the dialplan (park); declined hangs up with
CALL_REJECTED and timeout with NO_USER_RESPONSE, which the worker sees as
CHANNEL_HANGUP on the desk leg.
Needs: mod_lua; mod_flite (or hs_whisper_file) for words rather than beeps.
]]

local util = require("hs_util")

local TONE_PROMPT = "tone_stream://%(200,100,800);%(200,100,1000)"

local function number_arg(i, default, low, high)
  local n = tonumber(argv and argv[i] or "")
  if not n or n < low or n > high then
    return default
  end
  return math.floor(n)
end

if not session or not session:ready() then
  return
end

local tries = number_arg(1, 2, 1, 5)
local timeout_ms = number_arg(2, 5000, 1000, 30000)

local company = session:getVariable("hs_company")
if not company or company == "" then
  company = "A company"
end
local prompt = util.prompt(session, session:getVariable("hs_whisper_file"),
  company .. " is on the line. Press 1 to accept, or 2 to decline.", TONE_PROMPT)

session:answer()
local digit = session:playAndGetDigits(1, 1, tries, timeout_ms, "#", prompt, "", "^[12]$")

local result
if digit == "1" then
  result = "accepted"
elseif digit == "2" then
  result = "declined"
else
  result = "timeout"
end

session:setVariable("hs_whisper_result", result)
util.log("INFO", "whisper on %s: %s", session:get_uuid(), result)
util.fire("whisper", session, { { "Whisper-Result", result } })

if result == "declined" then
  session:hangup("CALL_REJECTED")
elseif result == "timeout" then
  session:hangup("NO_USER_RESPONSE")
end
