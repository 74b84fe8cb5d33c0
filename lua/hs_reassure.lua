--[[
hs_reassure.lua: tell the live agent we are connecting them, the moment a
human is detected: "Thanks for waiting, I'm connecting you now."

Run on the company leg, either with
  uuid_broadcast <company-uuid> lua::<path>/hs_reassure.lua aleg
(the leg stays parked for the worker when the script returns) or from the
dialplan extension hs_reassure in hold_slayer_desk (plays, then parks).

Arguments (optional):
  argv[1]  a prompt file to play instead of text-to-speech
Reads:
  hs_reassure_file  channel variable, same as argv[1] (argv wins)
  hs_call_id        copied into the event
Sets:
  hs_reassured  the file string that was played
Fires:
  CUSTOM hold_slayer::reassured with Unique-ID and hs_call_id.
Needs: mod_lua; mod_flite (or a prompt file) for words rather than a tone.
]]

local util = require("hs_util")

local TEXT = "Thanks for waiting, I'm connecting you now."
local TONE = "tone_stream://%(300,100,440);%(300,0,660)"

if not session or not session:ready() then
  return
end

local file = (argv and argv[1]) or session:getVariable("hs_reassure_file")
local what = util.prompt(session, file, TEXT, TONE)
session:streamFile(what)
session:setVariable("hs_reassured", what)
util.log("INFO", "reassured the agent on %s", session:get_uuid())
util.fire("reassured", session, {})
