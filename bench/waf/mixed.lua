-- wrk script for bench/waf/score.sh throughput: cycles through the requests of mixed.tsv
-- (20 benign, 5 attack), the same sequence for every target.
--
--   wrk -s bench/waf/mixed.lua http://127.0.0.1:PORT -- bench/waf/mixed.tsv
--
-- Every request carries Host: localhost (the moat target's load balancer answers to it; nginx
-- does not care), a browser User-Agent, Accept and Accept-Language; a row may add one header
-- and a body (Content-Length is added by wrk.format).

local formatted = {}
local i = 0

local function split(line)
  local t = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = field end
  return t
end

function init(args)
  local path = args[1] or "bench/waf/mixed.tsv"
  for line in io.lines(path) do
    if line ~= "" and line:sub(1, 1) ~= "#" then
      local f = split(line)
      local headers = {
        ["Host"] = "localhost",
        ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ["Accept-Language"] = "en-US,en;q=0.5",
      }
      if f[4] ~= "-" then
        local name, value = f[4]:match("^([^:]+):%s*(.*)$")
        headers[name] = value
      end
      local body = nil
      if f[5] ~= "-" then body = f[5] end
      formatted[#formatted + 1] = wrk.format(f[2], f[3], headers, body)
    end
  end
  -- Threads start at different offsets, so the mix is the same at any moment.
  i = math.random(0, #formatted - 1)
end

function request()
  i = i % #formatted + 1
  return formatted[i]
end
