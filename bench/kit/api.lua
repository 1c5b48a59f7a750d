-- bench/api's wrk script: GET each path of a file (one per line, written by kit/api.py) in turn,
-- cycling; each wrk thread starts at its own offset so the threads do not walk in step. Requests are
-- formatted once in init(), so the load generator spends its CPU on sockets, not on Lua strings.
local requests, next_index = {}, 0
local threads = 0

function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end

function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", line)
  end
  -- A prime stride spreads the threads' starting points over the file.
  next_index = ((thread_index or 0) * 7919) % #requests
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
