"""The Lua scripts of a run's store: each a step that must happen at once in Redis
(a check and the write it guards, a count and its marker), so that two workers, or a
task and its redelivery, never interleave inside it.

Keys and arguments are documented above each script; the keys come from ``keys``.
"""

# One page's kept numbers claim their E.164 in the run's hash; the lowest list position
# wins. Whoever loses (this row, or the holder it displaces) is pushed to the run's
# duplicates. KEYS: claims hash, duplicates list. ARGV: ttl, then (e164, position, row)
# triples where row is the JSON the duplicates list keeps.
CLAIM_NUMBERS = """
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local e164, pos, row = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
  local held = redis.call('HGET', KEYS[1], e164)
  if not held then
    redis.call('HSET', KEYS[1], e164, pos .. '|' .. row)
  else
    local sep = string.find(held, '|', 1, true)
    local held_pos = tonumber(string.sub(held, 1, sep - 1))
    if pos < held_pos then
      redis.call('HSET', KEYS[1], e164, pos .. '|' .. row)
      redis.call('RPUSH', KEYS[2], string.sub(held, sep + 1))
    elseif pos > held_pos then
      redis.call('RPUSH', KEYS[2], row)
    end
  end
end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""

# Set a chunk's done marker and count the chunk, once (and by kind, when ARGV[4] names the
# kind's counter). The task that sets it also keeps its tally (the API requests the chunk
# took, JSON) for the run's record, which adds every chunk's at once: a chunk is one
# command here, not one per counter. The tallies' list gets its TTL when this creates
# it, not at every push. KEYS: marker, counts, tallies. ARGV: ttl, contacts updated,
# tally ("": none), the kind's counter ("": none). Returns 1 when it set the marker.
MARK_DONE = """
if not redis.call('SET', KEYS[1], 1, 'NX', 'EX', tonumber(ARGV[1])) then return 0 end
redis.call('HINCRBY', KEYS[2], 'chunks_done', 1)
if ARGV[4] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[4], 1) end
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[2], 'updated', tonumber(ARGV[2])) end
if ARGV[3] ~= '' and redis.call('RPUSH', KEYS[3], ARGV[3]) == 1 then
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[1]))
end
return 1
"""

# Pass a step's claim from one task to the task that continues it (back-pressure sends the
# same page again under a new id). KEYS: the claim. ARGV: from id, to id, ttl.
HAND_OFF = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

# Keep the cursor of page n, unless the platform announced it before for another page
# (its paging loops). KEYS: cursors hash, seen-cursors hash. ARGV: page, cursor, digest,
# ttl. Returns -1, or the page that had this cursor first.
NOTE_CURSOR = """
local held = redis.call('HGET', KEYS[2], ARGV[3])
if held and held ~= ARGV[1] then return tonumber(held) end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return -1
"""

# Each contact id belongs to the first page that claims it; a redelivered page finds its
# own ids. KEYS: ids hash. ARGV: ttl, page, ids... Returns the ids another page holds.
# Two commands per slice of ids (HMGET, then one HSET of the unclaimed), not two per id:
# this runs for every contact of the list.
CLAIM_IDS = """
local page, repeated = ARGV[2], {}
for first = 3, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  local held = redis.call('HMGET', KEYS[1], unpack(ARGV, first, last))
  local claims = {}
  for i = 1, #held do
    local id = ARGV[first + i - 1]
    if not held[i] then
      claims[#claims + 1] = id
      claims[#claims + 1] = page
    elseif held[i] ~= page then
      repeated[#repeated + 1] = id
    end
  end
  if #claims > 0 then redis.call('HSET', KEYS[1], unpack(claims)) end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return repeated
"""

# Whether a run may send one more write request, read right before it is sent: the run
# must still hold its list, not be halted by the breaker, and not be failed (by the
# watchdog, say). A run found without its lock is failed here, so every other task of it
# stops at its next check. A permitted task is noted in the run's writers (a sorted set
# by time of its last permit) until its outcomes are recorded: whoever fails the run
# waits for those before writing its audit line. It also carries the previous request's
# answer: one that was not a server error ends the run's streak of them (a meta field,
# read with the others, so ending no streak costs nothing). The lock is renewed only when
# asked (a task renews it as it starts and then about every minute, not per request) and
# the writers' TTL is set when a writer joins, not at every permit.
# KEYS: list lock, run meta, writers. ARGV: run id, lock ttl (ms; 0: no renewal), list
# id, writer token, now, "1" when the previous request was answered. Returns "" or why not.
WRITE_PERMIT = """
local meta = redis.call('HMGET', KEYS[2], 'halted', 'cancelled', 'error', 'consecutive_5xx')
if meta[1] then return 'halted: ' .. meta[1] end
if meta[2] then return 'cancelled: ' .. meta[2] end
if meta[3] then return 'failed: ' .. meta[3] end
if ARGV[6] == '1' and meta[4] then redis.call('HDEL', KEYS[2], 'consecutive_5xx') end
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  local who = holder and ('run ' .. holder) or 'nobody (it expired)'
  local why = 'lost the lock of list ' .. ARGV[3] .. ' to ' .. who .. ': stopped writing'
  redis.call('HSETNX', KEYS[2], 'error', why)
  return 'failed: ' .. redis.call('HGET', KEYS[2], 'error')
end
if ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
if redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[4]) == 1 then
  redis.call('EXPIRE', KEYS[3], 86400)
end
return ''
"""

# A server error on a write: the run's streak grows, and the request that makes it reach
# the threshold halts the run in the same step. Apart, another thread's permit could pass
# between the count and the flag, and send past the breaker.
# KEYS: run meta. ARGV: streak field, threshold. Returns the streak.
NOTE_SERVER_ERROR = """
local streak = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if streak >= tonumber(ARGV[2]) then
  redis.call('HSETNX', KEYS[1], 'halted',
    streak .. ' consecutive server errors on writes: halted for manual review')
end
return streak
"""

# The freshness index: a row a planned write, id -> [before, after, reason, chunk] with
# ``after`` shrunk to {} (an update) or null (a removal): what the re-read compares and
# un-counts; ``chunk`` tags the write chunk that holds it (``r3``: removal chunk 3), whose
# count of rows not judged yet it adds to. A later row for the same id (a duplicate's
# removal, indexed after the updates) wins, and takes the count from the earlier row's
# chunk. One HMGET and one HSET per 500 rows, not one per row.
# KEYS: plan list, index hash, chunk-pending hash. ARGV: ttl, first, last, chunk tag
# prefix, chunk size (0: rows not tagged, written only once the re-read has ended).
INDEX_PLAN = """
local first, prefix, size = tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[5])
local raws = redis.call('LRANGE', KEYS[1], first, ARGV[3])
local pending = {}
local function count(tag, by) pending[tag] = (pending[tag] or 0) + by end
for from = 1, #raws, 500 do
  local to = math.min(from + 499, #raws)
  local ids, decoded, rows = {}, {}, {}
  for i = from, to do
    local row = cjson.decode(raws[i])
    ids[#ids + 1] = row[1]
    decoded[#decoded + 1] = row
  end
  local held = redis.call('HMGET', KEYS[2], unpack(ids))
  for n, row in ipairs(decoded) do
    local earlier = held[n] and string.match(held[n], ',"([ru]%d+)"%]$')
    if earlier and string.sub(held[n], 1, 1) == '[' then count(earlier, -1) end
    local after = row[3]
    if after ~= cjson.null then after = {} end
    rows[#rows + 1] = row[1]
    if size > 0 then
      local tag = prefix .. math.floor((first + from + n - 2) / size)
      rows[#rows + 1] = cjson.encode({row[2], after, row[4], tag})
      count(tag, 1)
    else
      rows[#rows + 1] = cjson.encode({row[2], after, row[4]})
    end
  end
  redis.call('HSET', KEYS[2], unpack(rows))
end
for tag, by in pairs(pending) do redis.call('HINCRBY', KEYS[3], tag, by) end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
"""

# Each planned contact is judged once: its index row becomes "fresh", "stale" (changed on
# the platform since our read) or "gone" (absent from the re-read list). A contact found
# stale or gone leaves the plan's counts for ``stale``, so it is neither written nor a
# failure. Each judgement takes one from its chunk's count of rows not judged: the chunks
# that reach 0 are returned, ready to write while the re-read goes on.
# With ARGV[3] = "1" the caller is a write: before the re-read has ended, every row it
# names must have been judged (else it gets an error, never a write on an unchecked
# contact, nor on one the index does not hold); after, a row the re-read did not meet is
# judged "gone". Returns each
# contact's state and the chunks made ready.
# The rows are read with one HMGET and judged with one HSET per slice of ids, the counts
# moved once per call: this runs for every planned contact, twice. An id given twice
# in one call is judged at its first mention, as if the calls were one after another.
# KEYS: index hash, counts hash, stale list, meta hash, chunk-pending hash. ARGV: ttl,
# reason prefix, need_verified, then (id, state) pairs.
MARK_FRESHNESS = """
if ARGV[3] == '1' and redis.call('HGET', KEYS[4], 'verified') ~= '1' then
  for first = 4, #ARGV, 1000 do
    local ids = {}
    for i = first, math.min(first + 999, #ARGV), 2 do ids[#ids + 1] = ARGV[i] end
    for _, row in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do
      if not row or string.sub(row, 1, 1) == '[' then
        return redis.error_reply('the list was not re-read before this write')
      end
    end
  end
end
local states, judged, moves, stale, chunks = {}, {}, {}, {}, {}
local function move(field, by) moves[field] = (moves[field] or 0) + by end
for first = 4, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  local ids = {}
  for i = first, last, 2 do ids[#ids + 1] = ARGV[i] end
  local rows = redis.call('HMGET', KEYS[1], unpack(ids))
  local marks = {}
  for n, id in ipairs(ids) do
    local state, row = ARGV[first + 2 * n - 1], rows[n]
    if judged[id] then
      state = judged[id]
    elseif not row then
      state = 'unplanned'
    elseif string.sub(row, 1, 1) ~= '[' then
      state = row
    else
      judged[id] = state
      marks[#marks + 1] = id
      marks[#marks + 1] = state
      local tag = string.match(row, ',"([ru]%d+)"%]$')
      if tag then chunks[tag] = (chunks[tag] or 0) + 1 end
      if state ~= 'fresh' then
        local entry = cjson.decode(row)
        if entry[2] == cjson.null then
          move('to_remove', -1)
          move(ARGV[2] .. tostring(entry[3]), -1)
        else
          move('to_update', -1)
        end
        move('stale', 1)
        move('stale_' .. state, 1)
        stale[#stale + 1] = id
      end
    end
    states[#states + 1] = state
  end
  if #marks > 0 then redis.call('HSET', KEYS[1], unpack(marks)) end
end
for field, by in pairs(moves) do redis.call('HINCRBY', KEYS[2], field, by) end
if #stale > 0 then
  for first = 1, #stale, 1000 do
    redis.call('RPUSH', KEYS[3], unpack(stale, first, math.min(first + 999, #stale)))
  end
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
local ready = {}
for tag, by in pairs(chunks) do
  if redis.call('HINCRBY', KEYS[5], tag, -by) == 0 then ready[#ready + 1] = tag end
end
return {states, ready}
"""

# After the removals: a contact the list still holds was not removed, whatever its DELETE
# was answered. One SMISMEMBER per slice of ids: the re-read list is mostly contacts never
# removed, and only those found removed are written. KEYS: removed set, failures hash,
# counts hash. ARGV: ttl, why, ids.
FLAG_STILL_PRESENT = """
local found = {}
for first = 3, #ARGV, 1000 do
  local last = math.min(first + 999, #ARGV)
  local flags = redis.call('SMISMEMBER', KEYS[1], unpack(ARGV, first, last))
  for i = 1, #flags do
    local id = ARGV[first + i - 1]
    if flags[i] == 1 and redis.call('SREM', KEYS[1], id) == 1 then
      redis.call('HSET', KEYS[2], id, ARGV[2])
      found[#found + 1] = id
    end
  end
end
if #found > 0 then
  redis.call('HINCRBY', KEYS[3], 'still_present', #found)
  redis.call('EXPIRE', KEYS[2], ARGV[1])
end
return found
"""
