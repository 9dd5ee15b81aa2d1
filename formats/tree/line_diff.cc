#include "formats/tree/line_diff.h"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

namespace kiln {
namespace {

using Lines = std::vector<std::string_view>;

// One step of an edit script: keep, remove or add a line.
struct Edit {
  char kind;  // ' ', '-', '+'
  std::string_view text;
};

// Myers' greedy forward search, keeping each round's furthest-reaching
// paths so the script can be traced back. Fails (empty optional) when more
// than kMaxEditDistance edits would be needed.
std::optional<std::vector<Edit>> myers(const Lines& a, const Lines& b) {
  const int64_t n = static_cast<int64_t>(a.size());
  const int64_t m = static_cast<int64_t>(b.size());
  const int64_t max = std::min<int64_t>(n + m, kMaxEditDistance);
  const int64_t offset = max + 1;
  std::vector<int64_t> v(static_cast<size_t>(2 * max + 3), 0);
  // trace[d] holds v[k] for k in [-d-1, d+1] as it was when round d began.
  std::vector<std::vector<int64_t>> trace;
  int64_t found = -1;
  for (int64_t d = 0; d <= max && found < 0; ++d) {
    trace.emplace_back(v.begin() + (offset - d - 1), v.begin() + (offset + d + 2));
    for (int64_t k = -d; k <= d; k += 2) {
      int64_t x = (k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1])) ? v[offset + k + 1]
                                                                                  : v[offset + k - 1] + 1;
      int64_t y = x - k;
      while (x < n && y < m && a[x] == b[y]) ++x, ++y;
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  if (found < 0) return std::nullopt;
  std::vector<Edit> script;
  int64_t x = n, y = m;
  for (int64_t d = found; d >= 0; --d) {
    const std::vector<int64_t>& round = trace[static_cast<size_t>(d)];
    auto at = [&](int64_t k) { return round[static_cast<size_t>(k + d + 1)]; };
    int64_t k = x - y;
    int64_t prev_k = (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    int64_t prev_x = d == 0 ? 0 : at(prev_k);
    int64_t prev_y = d == 0 ? 0 : prev_x - prev_k;
    while (x > prev_x && y > prev_y) script.push_back({' ', a[--x]}), --y;
    if (d > 0) {
      if (x == prev_x) script.push_back({'+', b[--y]});
      else script.push_back({'-', a[--x]});
    }
  }
  std::reverse(script.begin(), script.end());
  return script;
}

std::vector<Edit> edit_script(const Lines& a, const Lines& b) {
  size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) ++head;
  size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head && a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) ++tail;
  Lines middle_a(a.begin() + head, a.end() - tail), middle_b(b.begin() + head, b.end() - tail);
  std::vector<Edit> script;
  for (size_t i = 0; i < head; ++i) script.push_back({' ', a[i]});
  if (auto middle = myers(middle_a, middle_b)) {
    script.insert(script.end(), middle->begin(), middle->end());
  } else {
    for (std::string_view line : middle_a) script.push_back({'-', line});
    for (std::string_view line : middle_b) script.push_back({'+', line});
  }
  for (size_t i = a.size() - tail; i < a.size(); ++i) script.push_back({' ', a[i]});
  return script;
}

}  // namespace

std::string Hunk::header() const {
  auto range = [](int64_t start, int64_t count) {
    return count == 1 ? fmt::format("{}", start) : fmt::format("{},{}", start, count);
  };
  return fmt::format("@@ -{} +{} @@", range(old_start, old_count), range(new_start, new_count));
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

std::vector<Hunk> diff_lines(std::string_view old_text, std::string_view new_text, int context) {
  std::vector<Edit> script = edit_script(split_lines(old_text), split_lines(new_text));
  std::vector<size_t> changes;
  for (size_t i = 0; i < script.size(); ++i)
    if (script[i].kind != ' ') changes.push_back(i);
  std::vector<Hunk> hunks;
  const size_t reach = static_cast<size_t>(std::max(context, 0));
  size_t next = 0;
  // Old and new line numbers (0-based) at script position `done`.
  size_t done = 0;
  int64_t old_line = 0, new_line = 0;
  auto advance = [&](size_t to) {
    for (; done < to; ++done) {
      if (script[done].kind != '+') ++old_line;
      if (script[done].kind != '-') ++new_line;
    }
  };
  while (next < changes.size()) {
    size_t first = changes[next];
    size_t last = first;
    // Changes closer than twice the context share a hunk.
    while (next + 1 < changes.size() && changes[next + 1] - last <= 2 * reach + 1) last = changes[++next];
    ++next;
    size_t begin = first > reach ? first - reach : 0;
    size_t end = std::min(script.size(), last + 1 + reach);
    advance(begin);
    Hunk hunk;
    hunk.old_start = old_line;
    hunk.new_start = new_line;
    for (size_t i = begin; i < end; ++i) {
      hunk.lines.push_back({script[i].kind, std::string(script[i].text)});
      if (script[i].kind != '+') ++hunk.old_count;
      if (script[i].kind != '-') ++hunk.new_count;
    }
    if (hunk.old_count > 0) ++hunk.old_start;
    if (hunk.new_count > 0) ++hunk.new_start;
    hunks.push_back(std::move(hunk));
  }
  return hunks;
}

HunkResult apply_hunks(std::string_view text, const std::vector<Hunk>& hunks) {
  Lines target = split_lines(text);
  const int64_t size = static_cast<int64_t>(target.size());
  struct Placement {
    const Hunk* hunk;
    int64_t at;
  };
  std::vector<Placement> placements;
  HunkResult result;
  int64_t floor = 0;   // a hunk may not start before the end of the previous one
  int64_t offset = 0;  // how far the previous hunk moved from where it said
  for (size_t index = 0; index < hunks.size(); ++index) {
    const Hunk& hunk = hunks[index];
    std::vector<std::string_view> expected;
    for (const HunkLine& line : hunk.lines)
      if (line.kind != '+') expected.push_back(line.text);
    const int64_t length = static_cast<int64_t>(expected.size());
    const int64_t stated = hunk.old_count == 0 ? hunk.old_start : hunk.old_start - 1;
    const int64_t wanted = std::max(floor, stated + offset);
    auto matches = [&](int64_t at) {
      if (at < floor || at + length > size) return false;
      for (int64_t i = 0; i < length; ++i)
        if (target[static_cast<size_t>(at + i)] != expected[static_cast<size_t>(i)]) return false;
      return true;
    };
    std::optional<int64_t> found;
    for (int64_t distance = 0; !found && (wanted - distance >= floor || wanted + distance + length <= size);
         ++distance) {
      if (matches(wanted + distance)) found = wanted + distance;
      else if (distance > 0 && matches(wanted - distance)) found = wanted - distance;
    }
    if (!found) {
      HunkRejection rejection{index, hunk.header()};
      for (int64_t i = 0; i < length; ++i) {
        int64_t line = wanted + i;
        if (line >= size) {
          rejection.line = line + 1;
          rejection.expected = expected[static_cast<size_t>(i)];
          rejection.past_end = true;
          break;
        }
        if (target[static_cast<size_t>(line)] != expected[static_cast<size_t>(i)]) {
          rejection.line = line + 1;
          rejection.expected = expected[static_cast<size_t>(i)];
          rejection.found = target[static_cast<size_t>(line)];
          break;
        }
      }
      result.rejections.push_back(std::move(rejection));
      continue;
    }
    placements.push_back({&hunk, *found});
    offset = *found - stated;
    floor = *found + length;
  }
  if (!result.rejections.empty()) return result;
  int64_t cursor = 0;
  for (const Placement& placement : placements) {
    for (; cursor < placement.at; ++cursor) result.text += target[static_cast<size_t>(cursor)];
    for (const HunkLine& line : placement.hunk->lines) {
      if (line.kind == '+') result.text += line.text;
      else if (line.kind == ' ') result.text += target[static_cast<size_t>(cursor++)];
      else ++cursor;
    }
  }
  for (; cursor < size; ++cursor) result.text += target[static_cast<size_t>(cursor)];
  return result;
}

}  // namespace kiln
