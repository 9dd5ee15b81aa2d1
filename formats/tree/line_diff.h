// LineDiff: unified-diff hunks between two texts, and applying them back,
// for the text part of kiln's tree patches (formats/tree/tree_patch.h).
//
// A text is split into lines that keep their "\n"; only the last line may
// lack it, and a hunk says so the way diff -u does ("\ No newline at end of
// file"). Hunks are made with Myers' O(ND) algorithm on the lines between
// the common head and tail; a pair of texts so different that the edit
// script would exceed kMaxEditDistance lines gets one hunk replacing the
// whole middle instead, which is as correct and cheaper to make.
//
// Applying is strict like patch(1) without fuzz: every context and removed
// line must match exactly. A hunk may apply at another line than the one it
// names (the file moved on above it), nearest first, but never overlapping
// the hunk before it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

struct HunkLine {
  char kind = ' ';   // ' ' context, '-' removed, '+' added
  std::string text;  // with its "\n", unless it is a file's unterminated last line
};

struct Hunk {
  // 1-based first lines and counts, as in "@@ -old_start,old_count +new_start,new_count @@".
  // A count of 0 puts the start on the line before the hunk (diff -u's rule).
  int64_t old_start = 0;
  int64_t old_count = 0;
  int64_t new_start = 0;
  int64_t new_count = 0;
  std::vector<HunkLine> lines;
  // The line of its "@@" header in the patch it was read from, for
  // messages; 0 for a hunk made here. Not part of what the hunk is.
  int patch_line = 0;

  // "@@ -1,3 +1,4 @@" (a count of 1 is left out).
  std::string header() const;
  bool operator==(const Hunk& other) const {
    return old_start == other.old_start && old_count == other.old_count && new_start == other.new_start &&
           new_count == other.new_count && lines == other.lines;
  }
};

inline bool operator==(const HunkLine& a, const HunkLine& b) { return a.kind == b.kind && a.text == b.text; }

constexpr int64_t kMaxEditDistance = 4000;

std::vector<std::string_view> split_lines(std::string_view text);

// The hunks turning `old_text` into `new_text`, with `context` lines around
// each change; none when they are equal.
std::vector<Hunk> diff_lines(std::string_view old_text, std::string_view new_text, int context = 3);

// Why a hunk did not apply: which one, and the first line that differs where
// the hunk says it belongs.
struct HunkRejection {
  size_t hunk_index = 0;  // 0-based
  std::string hunk_header;
  int64_t line = 0;       // 1-based line of the target where the mismatch is
  std::string expected;   // the patch's line ("" past the end)
  std::string found;      // the target's line ("" past the end)
  bool past_end = false;  // the target ended before the hunk did
};

struct HunkResult {
  std::string text;                        // valid only when rejections is empty
  std::vector<HunkRejection> rejections;  // every hunk that did not apply
};

HunkResult apply_hunks(std::string_view text, const std::vector<Hunk>& hunks);

}  // namespace kiln
