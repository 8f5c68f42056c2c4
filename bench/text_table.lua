-- The bench reports' shared formatting: aligned text tables and numbers
-- with thousands separators. Loaded by bench/report*.lua and
-- bench/callgrind_breakdown.lua, which run from the repository's root.
local M = {}

-- 1234567 -> "1,234,567" (rounded to a whole number; "-0" prints as "0").
function M.thousands(x)
  local s = string.format("%.0f", x)
  if s == "-0" then s = "0" end
  local sign, digits = s:match("^(-?)(%d+)$")
  return sign .. digits:reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", "")
end

-- Prints head, a rule and rows; columns whose index is a key of `left` are
-- left-aligned (default: the first), the others right-aligned.
function M.print(head, rows, left)
  left = left or { [1] = true }
  local width = {}
  for i, h in ipairs(head) do width[i] = #h end
  for _, r in ipairs(rows) do
    for i, cell in ipairs(r) do width[i] = math.max(width[i], #cell) end
  end
  local function line(cells)
    local out = {}
    for i, cell in ipairs(cells) do
      local pad = string.rep(" ", width[i] - #cell)
      out[i] = left[i] and cell .. pad or pad .. cell
    end
    print((table.concat(out, "  "):gsub("%s+$", "")))
  end
  line(head)
  local rule = {}
  for i = 1, #head do rule[i] = string.rep("-", width[i]) end
  line(rule)
  for _, r in ipairs(rows) do line(r) end
end

return M
