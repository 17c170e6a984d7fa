"""The Lua scripts that make each multi-step change to a run's Redis keys atomic.

Every key of a run shares the prefix ``pipelines:{RUN}:`` (a Redis Cluster hash tag, so that a
script touches one slot); `DONE_NODES` and `REGISTER` build the keys they read from that prefix.
Times are the Redis server's own (``TIME``), so the clocks of the machines never matter.
"""

from __future__ import annotations

__all__ = ["ACK", "BEAT", "CLAIM", "FINISH", "PUT", "REGISTER", "DONE_NODES", "STATS", "STOPPING"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

PUT = """
-- KEYS[1] the stream; ARGV[1] its bound; ARGV[2..] entries. Adds entries while the stream holds
-- fewer than its bound (acknowledged entries are deleted, so its length is what is in flight);
-- returns how many it added, in order. Never trims.
local room = tonumber(ARGV[1]) - redis.call('XLEN', KEYS[1])
local n = #ARGV - 1
if room < n then n = room end
for i = 2, n + 1 do redis.call('XADD', KEYS[1], '*', 'd', ARGV[i]) end
if n < 0 then return 0 end
return n
"""

ACK = """
-- KEYS[1] the stream; ARGV[1] the group; ARGV[2..] entry ids. Acknowledge and delete, at once,
-- so that an entry is either in flight (and counted by XLEN) or gone.
redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
return redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
"""

CLAIM = """
-- KEYS[1] the stream; ARGV: group, consumer, min idle ms, count. Take over entries another
-- consumer left unacknowledged for that long; returns {id, data, times delivered} for each.
local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(r[2]) do
  local id = e[1]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  local times = 1
  if p[1] then times = p[1][4] end
  if e[2] then out[#out + 1] = {id, e[2][2], times} end
end
return out
"""

BEAT = (
    """
-- KEYS[1] the run's alive hash; ARGV[1] the worker. The worker is alive now.
"""
    + _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], now)
return now
"""
)

REGISTER = (
    """
-- ARGV: prefix, worker, dead_after ms, JSON list of nodes, JSON list of those that run once only.
-- Registers one instance of each node for this worker, unless the run is over or a live worker
-- already runs one of the single-instance nodes: returns {} or {reason, detail, detail}.
local prefix, worker, dead_after = ARGV[1], ARGV[2], tonumber(ARGV[3])
local state = redis.call('HGET', prefix .. 'run', 'state')
if state ~= 'running' and state ~= 'stopping' then return {'over', state or 'unknown', ''} end
"""
    + _NOW
    + """
local single = {}
for _, n in ipairs(cjson.decode(ARGV[5])) do single[n] = true end
local inst = redis.call('HGETALL', prefix .. 'instances')
for i = 1, #inst, 2 do
  local sep = string.find(inst[i], '\\t', 1, true)
  local node, other = string.sub(inst[i], 1, sep - 1), string.sub(inst[i], sep + 1)
  if single[node] and inst[i + 1] == 'running' then
    local beat = tonumber(redis.call('HGET', prefix .. 'alive', other))
    if beat and now - beat <= dead_after then return {'single', node, other} end
  end
end
redis.call('HSET', prefix .. 'alive', worker, now)
for _, n in ipairs(cjson.decode(ARGV[4])) do
  redis.call('HSET', prefix .. 'instances', n .. '\\t' .. worker, 'running')
end
return {}
"""
)

FINISH = """
-- KEYS[1] the run hash; ARGV: the final state, the error (may be empty). Ends the run once: the
-- first final state wins; a 'stopping' run may still end in any state.
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'running' or state == 'stopping' then
  redis.call('HSET', KEYS[1], 'state', ARGV[1], 'error', ARGV[2])
  return 1
end
return 0
"""

STATS = """
-- KEYS[1] the run's stats hash; ARGV[1] the publication's number in its process; ARGV[2..] field,
-- value pairs (each value a JSON object holding that number as 'published'). Writes each field
-- unless a later publication of that instance is there already: a process's publications can
-- reach Redis out of order (a cancelled caller's command still completes, on its own connection).
local n = tonumber(ARGV[1])
local written = 0
for i = 2, #ARGV, 2 do
  local old = redis.call('HGET', KEYS[1], ARGV[i])
  if not old or (tonumber(cjson.decode(old)['published']) or -1) < n then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    written = written + 1
  end
end
return written
"""

STOPPING = """
-- KEYS[1] the run hash. A running run is stopping (its sources were stopped).
if redis.call('HGET', KEYS[1], 'state') == 'running' then redis.call('HSET', KEYS[1], 'state', 'stopping') end
return 0
"""

DONE_NODES = (
    """
-- ARGV: prefix, dead_after ms, the plan: JSON [[node, is_source, [[stream, [producer...]]...]]...]
-- in topological order. Marks done each node that has finished everywhere: its producers are
-- done, its input streams are empty (nothing unread, nothing unacknowledged), and no live
-- instance of it is still running (a source must also have started). Returns the done nodes.
local prefix, dead_after = ARGV[1], tonumber(ARGV[2])
local plan = cjson.decode(ARGV[3])
"""
    + _NOW
    + """
local alive = {}
local a = redis.call('HGETALL', prefix .. 'alive')
for i = 1, #a, 2 do alive[a[i]] = tonumber(a[i + 1]) end
local open, seen = {}, {}
local inst = redis.call('HGETALL', prefix .. 'instances')
for i = 1, #inst, 2 do
  local sep = string.find(inst[i], '\\t', 1, true)
  local node, worker = string.sub(inst[i], 1, sep - 1), string.sub(inst[i], sep + 1)
  seen[node] = true
  if inst[i + 1] == 'running' and alive[worker] and now - alive[worker] <= dead_after then open[node] = true end
end
local done = {}
for _, d in ipairs(redis.call('SMEMBERS', prefix .. 'done')) do done[d] = true end
for _, entry in ipairs(plan) do
  local node, is_source, inputs = entry[1], entry[2], entry[3]
  if not done[node] then
    local ok = not open[node] and (seen[node] or not is_source)
    for _, input in ipairs(inputs) do
      for _, p in ipairs(input[2]) do
        if not done[p] then ok = false end
      end
      if ok and redis.call('XLEN', input[1]) > 0 then ok = false end
    end
    if ok then
      done[node] = true
      redis.call('SADD', prefix .. 'done', node)
    end
  end
end
local out = {}
for node, _ in pairs(done) do out[#out + 1] = node end
return out
"""
)
