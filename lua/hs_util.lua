--[[
hs_util.lua: helpers shared by the Hold Slayer scripts in this folder.

Not run on its own: the scripts `require("hs_util")`, found through
lua.conf.xml's script-directory ($${hs_lua_dir}/?.lua).  Everything here is
pure Lua except say(), log() and global(), which use the freeswitch API, so it
can be unit-tested with a fake `freeswitch` table.
]]

local M = {}

--- Log one line to the FreeSWITCH console, tagged so grep finds it.
function M.log(level, fmt, ...)
  freeswitch.consoleLog(level, "[hold-slayer] " .. string.format(fmt, ...) .. "\n")
end

--- A global $${variable} from vars.xml ("" when unset).
function M.global(name)
  local v = freeswitch.getGlobalVariable(name)
  if v == nil then
    return ""
  end
  return v
end

--- Percent-encode everything but unreserved characters (RFC 3986), so the
--- text survives mod_curl's space-separated argument parsing.
function M.url_encode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

--- JSON string literal for s.
function M.json_string(s)
  local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
                    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

--- JSON object of string values, keys in the given order.
function M.json_object(keys, values)
  local parts = {}
  for _, k in ipairs(keys) do
    if values[k] ~= nil then
      parts[#parts + 1] = M.json_string(k) .. ":" .. M.json_string(tostring(values[k]))
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

--- Minimal JSON decoder (objects, arrays, strings, numbers, true/false/null).
--- Returns value, or nil and an error message.
function M.json_decode(text)
  local pos = 1
  local value

  local function skip()
    pos = string.find(text, "[^ \t\r\n]", pos) or (#text + 1)
  end

  local function err(what)
    error({ msg = what .. " at " .. pos }, 0)
  end

  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = string.sub(text, pos, pos)
      if c == "" then err("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = string.sub(text, pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
        if e == "u" then
          local code = tonumber(string.sub(text, pos + 2, pos + 5), 16)
          if not code then err("bad \\u escape") end
          out[#out + 1] = code < 128 and string.char(code) or "?"
          pos = pos + 6
        else
          out[#out + 1] = map[e] or e
          pos = pos + 2
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end

  function value()
    skip()
    local c = string.sub(text, pos, pos)
    if c == "{" then
      local obj = {}
      pos = pos + 1
      skip()
      if string.sub(text, pos, pos) == "}" then pos = pos + 1; return obj end
      while true do
        skip()
        if string.sub(text, pos, pos) ~= '"' then err("expected key") end
        local k = str()
        skip()
        if string.sub(text, pos, pos) ~= ":" then err("expected ':'") end
        pos = pos + 1
        obj[k] = value()
        skip()
        local d = string.sub(text, pos, pos)
        pos = pos + 1
        if d == "}" then return obj end
        if d ~= "," then err("expected ',' or '}'") end
      end
    elseif c == "[" then
      local arr = {}
      pos = pos + 1
      skip()
      if string.sub(text, pos, pos) == "]" then pos = pos + 1; return arr end
      while true do
        arr[#arr + 1] = value()
        skip()
        local d = string.sub(text, pos, pos)
        pos = pos + 1
        if d == "]" then return arr end
        if d ~= "," then err("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    else
      for word, v in pairs({ ["true"] = true, ["false"] = false }) do
        if string.sub(text, pos, pos + #word - 1) == word then pos = pos + #word; return v end
      end
      if string.sub(text, pos, pos + 3) == "null" then pos = pos + 4; return nil end
      local num = string.match(text, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" then err("unexpected character") end
      pos = pos + #num
      return tonumber(num)
    end
  end

  local ok, result = pcall(function()
    local v = value()
    skip()
    if pos <= #text then err("trailing data") end
    return v
  end)
  if ok then
    return result
  end
  return nil, (type(result) == "table" and result.msg) or tostring(result)
end

--- E.164 from the digits a person dials after the star code:
--- 10 digits = NANP, 1 + 10 digits = NANP, 011 + digits = international,
--- anything else is taken as already starting with its country code.
function M.e164(digits)
  if string.match(digits, "^%d%d%d%d%d%d%d%d%d%d$") then
    return "+1" .. digits
  end
  local intl = string.match(digits, "^011(%d+)$")
  if intl then
    return "+" .. intl
  end
  return "+" .. digits
end

--- The file string to play for a prompt: an explicit file wins, then text-to-speech
--- with the configured engine (vars.xml hs_tts_engine / hs_tts_voice, mod_flite by
--- default, played as "say:<text>"), then `tone` when no engine is configured.
function M.prompt(session, file, text, tone)
  if file and file ~= "" then
    return file
  end
  local engine = M.global("hs_tts_engine")
  if engine ~= "" then
    session:setVariable("tts_engine", engine)
    session:setVariable("tts_voice", M.global("hs_tts_voice"))
    return "say:" .. text
  end
  return tone
end

--- Speak text to the channel (see prompt()); returns what was played.
function M.say(session, text, tone)
  local what = M.prompt(session, nil, text, tone)
  if what and what ~= "" then
    session:streamFile(what)
  end
  return what
end

--- Fire CUSTOM event `hold_slayer::<name>` for the worker (it listens with `event plain ALL`).
function M.fire(name, session, headers)
  local e = freeswitch.Event("CUSTOM", "hold_slayer::" .. name)
  e:addHeader("Unique-ID", session:get_uuid())
  local call_id = session:getVariable("hs_call_id")
  if call_id and call_id ~= "" then
    e:addHeader("hs_call_id", call_id)
  end
  for _, kv in ipairs(headers) do
    e:addHeader(kv[1], kv[2])
  end
  e:fire()
end

return M
