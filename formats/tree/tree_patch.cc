#include "formats/tree/tree_patch.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

#include "base/base64.h"
#include "base/hash.h"
#include "formats/tree/tree_path.h"

namespace kiln {
namespace {

constexpr std::string_view kMagic = "kiln-patch 1";
constexpr size_t kBase64Columns = 76;

// --- Words: bare, or double-quoted with C escapes ---------------------------

bool needs_quotes(std::string_view word) {
  if (word.empty()) return true;
  for (unsigned char c : word)
    if (c <= ' ' || c == '"' || c == '\\' || c == 0x7f) return true;
  return false;
}

// The word between double quotes, with C escapes.
std::string c_quoted(std::string_view word) {
  std::string out = "\"";
  for (unsigned char c : word) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < ' ' || c == 0x7f) out += fmt::format("\\{:03o}", c);
        else out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string quote(std::string_view word) { return needs_quotes(word) ? c_quoted(word) : std::string(word); }

// A cursor over one line of the patch, for its words and their columns.
class LineReader {
 public:
  LineReader(std::string_view name, int line_number, std::string_view line)
      : name_(name), line_number_(line_number), line_(line) {}

  Location here() const { return {std::string(name_), line_number_, static_cast<int>(pos_) + 1}; }
  bool at_end() const { return pos_ >= line_.size(); }

  // Consumes `literal` or fails with "expected LITERAL".
  Result<> expect(std::string_view literal) {
    if (line_.substr(pos_).starts_with(literal)) {
      pos_ += literal.size();
      return {};
    }
    return fail_at(here(), "expected '{}'", literal);
  }

  Result<> expect_end() {
    if (!at_end()) return fail_at(here(), "expected the end of the line, found '{}'", line_.substr(pos_));
    return {};
  }

  // One word, bare or quoted, followed by a space or the end of the line.
  Result<std::string> word(std::string_view what) {
    if (at_end() || line_[pos_] == ' ') return fail_at(here(), "expected {}", what);
    std::string out;
    if (line_[pos_] != '"') {
      size_t end = line_.find(' ', pos_);
      if (end == std::string_view::npos) end = line_.size();
      out = std::string(line_.substr(pos_, end - pos_));
      pos_ = end;
    } else {
      ++pos_;
      while (true) {
        if (at_end()) return fail_at(here(), "expected the closing '\"' of {}", what);
        char c = line_[pos_++];
        if (c == '"') break;
        if (c != '\\') {
          out += c;
          continue;
        }
        if (at_end()) return fail_at(here(), "expected an escape after '\\'");
        char e = line_[pos_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case 't': out += '\t'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          default: {
            if (e < '0' || e > '3' || pos_ + 2 > line_.size() || line_[pos_] < '0' || line_[pos_] > '7' ||
                line_[pos_ + 1] < '0' || line_[pos_ + 1] > '7')
              return fail_at(here(), "expected one of the escapes \\\" \\\\ \\t \\n \\r \\ooo");
            out += static_cast<char>((e - '0') * 64 + (line_[pos_] - '0') * 8 + (line_[pos_ + 1] - '0'));
            pos_ += 2;
          }
        }
      }
    }
    if (!at_end()) {
      if (line_[pos_] != ' ') return fail_at(here(), "expected a space after {}", what);
      ++pos_;
    }
    return out;
  }

  Result<uint64_t> number(std::string_view what, int base = 10) {
    Location where = here();
    KILN_ASSIGN(std::string text, word(what));
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc() || end != text.data() + text.size()) return fail_at(where, "expected {}, found '{}'", what, text);
    return value;
  }

 private:
  std::string_view name_;
  int line_number_;
  std::string_view line_;
  size_t pos_ = 0;
};

// --- States -----------------------------------------------------------------

std::string owner_text(const NodeState& state) { return fmt::format("{}:{}", state.uid, state.gid); }

Result<> read_owner(LineReader& reader, NodeState& state) {
  Location where = reader.here();
  KILN_ASSIGN(std::string text, reader.word("an owner UID:GID"));
  size_t colon = text.find(':');
  auto number = [](std::string_view digits, uint32_t& out) {
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return ec == std::errc() && end == digits.data() + digits.size() && !digits.empty();
  };
  if (colon == std::string::npos || !number(std::string_view(text).substr(0, colon), state.uid) ||
      !number(std::string_view(text).substr(colon + 1), state.gid))
    return fail_at(where, "expected an owner UID:GID (numbers), found '{}'", text);
  return {};
}

Result<NodeState> read_state(LineReader& reader) {
  NodeState state;
  Location where = reader.here();
  KILN_ASSIGN(std::string kind, reader.word("none, file, directory or symlink"));
  if (kind == "none") {
    KILN_TRY(reader.expect_end());
    return state;
  }
  if (kind == "file" || kind == "directory") {
    state.kind = kind == "file" ? NodeKind::kFile : NodeKind::kDirectory;
    Location at = reader.here();
    KILN_ASSIGN(uint64_t mode, reader.number("a mode of four octal digits", 8));
    if (mode > 07777) return fail_at(at, "expected a mode of four octal digits (at most 7777)");
    state.mode = static_cast<uint32_t>(mode);
  } else if (kind == "symlink") {
    state.kind = NodeKind::kSymlink;
    KILN_ASSIGN(state.target, reader.word("the symlink's target"));
    if (state.target.empty()) return fail_at(where, "expected a symlink target that is not empty");
  } else {
    return fail_at(where, "expected none, file, directory or symlink, found '{}'", kind);
  }
  KILN_TRY(read_owner(reader, state));
  KILN_TRY(reader.expect_end());
  return state;
}

// --- Reading ----------------------------------------------------------------

struct Lines {
  std::vector<std::string_view> lines;
  explicit Lines(std::string_view text) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
  }
  size_t size() const { return lines.size(); }
  std::string_view operator[](size_t i) const { return lines[i]; }
};

Result<> check_path(const Location& where, std::string_view path) {
  if (path == ".") return {};
  if (path.empty() || path.starts_with('/') || path.ends_with('/'))
    return fail_at(where, "expected a relative path like etc/hostname (or . for the root), found '{}'", path);
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos)
      return fail_at(where, "expected a path without empty, '.' or '..' components, found '{}'", path);
    start = end + 1;
  }
  return {};
}

std::string a_path(const PatchEntry& entry) {
  return entry.old_state.kind == NodeKind::kNone ? "/dev/null" : quote("a/" + entry.path);
}
std::string b_path(const PatchEntry& entry) {
  return entry.new_state.kind == NodeKind::kNone ? "/dev/null" : quote("b/" + entry.path);
}

Result<int64_t> hunk_number(std::string_view text, const Location& where) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0)
    return fail_at(where, "expected a hunk header like '@@ -1,3 +1,4 @@'");
  return value;
}

// "-1,3" or "+4": a start and a count (1 when left out).
Result<std::pair<int64_t, int64_t>> hunk_range(std::string_view text, const Location& where) {
  size_t comma = text.find(',');
  KILN_ASSIGN(int64_t start, hunk_number(text.substr(0, comma), where));
  int64_t count = 1;
  if (comma != std::string_view::npos) {
    KILN_ASSIGN(count, hunk_number(text.substr(comma + 1), where));
  }
  return std::pair{start, count};
}

class PatchParser {
 public:
  PatchParser(std::string_view text, std::string_view name) : lines_(text), name_(name) {}

  Result<TreePatch> parse() {
    TreePatch patch;
    if (lines_.size() == 0 || lines_[0] != kMagic) {
      if (lines_.size() > 0 && lines_[0].starts_with("kiln-patch "))
        return fail_at(at(0), "expected '{}': this patch is in a format version this kiln does not read",
                       kMagic);
      return fail_at(at(0), "expected '{}' on the first line (a kiln patch, see docs/patch-format.md)", kMagic);
    }
    size_t i = 1;
    for (; i < lines_.size() && (lines_[i].empty() || lines_[i].starts_with('#')); ++i) {
      std::string_view comment = lines_[i];
      if (comment.empty()) continue;
      comment.remove_prefix(1);
      if (comment.starts_with(' ')) comment.remove_prefix(1);
      patch.comments.emplace_back(comment);
    }
    std::set<std::string> seen;
    while (i < lines_.size()) {
      if (lines_[i].empty()) {
        ++i;
        continue;
      }
      KILN_ASSIGN(PatchEntry entry, parse_entry(i));
      if (!seen.insert(entry.path).second)
        return fail_at(at(static_cast<size_t>(entry.line - 1)), "expected each path once; {} has an entry already",
                       quote(entry.path));
      patch.entries.push_back(std::move(entry));
    }
    return patch;
  }

 private:
  Location at(size_t index, int column = 1) const {
    return {std::string(name_), static_cast<int>(index) + 1, column};
  }
  LineReader reader(size_t index) const { return LineReader(name_, static_cast<int>(index) + 1, lines_[index]); }

  Result<std::string_view> line(size_t i, std::string_view what) const {
    if (i >= lines_.size()) return fail_at(at(i), "expected {}, found the end of the patch", what);
    return lines_[i];
  }

  Result<PatchEntry> parse_entry(size_t& i) {
    PatchEntry entry;
    entry.line = static_cast<int>(i) + 1;
    {
      LineReader r = reader(i);
      KILN_TRY(r.expect("diff "));
      Location where = r.here();
      KILN_ASSIGN(entry.path, r.word("a path"));
      KILN_TRY(r.expect_end());
      KILN_TRY(check_path(where, entry.path));
    }
    ++i;
    KILN_TRY(line(i, "'old STATE'"));
    {
      LineReader r = reader(i);
      KILN_TRY(r.expect("old "));
      KILN_ASSIGN(entry.old_state, read_state(r));
    }
    ++i;
    KILN_TRY(line(i, "'new STATE'"));
    {
      LineReader r = reader(i);
      KILN_TRY(r.expect("new "));
      KILN_ASSIGN(entry.new_state, read_state(r));
    }
    ++i;
    if (i < lines_.size() && lines_[i].starts_with("sha256 ")) {
      std::string_view hex = lines_[i].substr(7);
      if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string_view::npos)
        return fail_at(at(i, 8), "expected 64 lower-case hex digits after sha256");
      entry.old_sha256 = std::string(hex);
      ++i;
    }
    if (i < lines_.size() && lines_[i].starts_with("base64 ")) {
      KILN_TRY(parse_base64(i, entry));
    } else if (i < lines_.size() && lines_[i].starts_with("--- ")) {
      KILN_TRY(parse_hunks(i, entry));
    }
    if (i < lines_.size() && !lines_[i].empty() && !lines_[i].starts_with("diff "))
      return fail_at(at(i), "expected a blank line or the next 'diff PATH', found '{}'", lines_[i]);
    KILN_TRY(check_entry(entry));
    return entry;
  }

  Result<> parse_base64(size_t& i, PatchEntry& entry) {
    LineReader r = reader(i);
    KILN_TRY(r.expect("base64 "));
    KILN_ASSIGN(uint64_t size, r.number("the content's size in bytes"));
    KILN_TRY(r.expect_end());
    const size_t chars = 4 * ((size + 2) / 3);
    if (chars / 4 * 3 < size || size > (uint64_t{1} << 40))
      return fail_at(at(i), "expected a content size kiln can hold, found {}", size);
    const size_t start = i;
    ++i;
    std::string text;
    while (text.size() < chars) {
      KILN_ASSIGN(std::string_view piece, line(i, "more base64 lines"));
      if (piece.size() > kBase64Columns || piece.empty() || text.size() + piece.size() > chars)
        return fail_at(at(i), "expected base64 lines of {} columns holding {} bytes", kBase64Columns, size);
      text += piece;
      ++i;
    }
    auto content = text.size() == 4 * ((size + 2) / 3) ? base64_decode(text) : std::nullopt;
    if (content && content->size() != size) content.reset();
    if (!content) return fail_at(at(start + 1), "expected valid base64 for {} bytes", size);
    entry.new_content = std::move(*content);
    return {};
  }

  Result<> parse_hunks(size_t& i, PatchEntry& entry) {
    std::string old_name = "--- " + a_path(entry), new_name = "+++ " + b_path(entry);
    if (lines_[i] != old_name) return fail_at(at(i), "expected '{}'", old_name);
    ++i;
    KILN_ASSIGN(std::string_view plus, line(i, "'" + new_name + "'"));
    if (plus != new_name) return fail_at(at(i), "expected '{}'", new_name);
    ++i;
    int64_t old_end = 0;
    while (i < lines_.size() && lines_[i].starts_with("@@ ")) {
      size_t header = i;
      KILN_ASSIGN(Hunk hunk, parse_hunk(i));
      hunk.patch_line = static_cast<int>(header) + 1;
      int64_t first = hunk.old_count == 0 ? hunk.old_start + 1 : hunk.old_start;
      if (first <= old_end || (hunk.old_count > 0 && hunk.old_start == 0))
        return fail_at(at(header), "expected hunks in order of their lines, each after the one before");
      old_end = hunk.old_count == 0 ? hunk.old_start : hunk.old_start + hunk.old_count - 1;
      entry.hunks.push_back(std::move(hunk));
    }
    if (entry.hunks.empty()) return fail_at(at(i), "expected a hunk '@@ -OLD +NEW @@' after the '+++' line");
    return {};
  }

  Result<Hunk> parse_hunk(size_t& i) {
    std::string_view header = lines_[i];
    Location where = at(i);
    size_t close = header.find(" @@", 3);
    if (close == std::string_view::npos) return fail_at(where, "expected a hunk header like '@@ -1,3 +1,4 @@'");
    std::string_view ranges = header.substr(3, close - 3);
    size_t space = ranges.find(' ');
    if (space == std::string_view::npos || !ranges.starts_with('-') || ranges.substr(space + 1, 1) != "+")
      return fail_at(where, "expected a hunk header like '@@ -1,3 +1,4 @@'");
    Hunk hunk;
    KILN_ASSIGN(auto old_range, hunk_range(ranges.substr(1, space - 1), where));
    KILN_ASSIGN(auto new_range, hunk_range(ranges.substr(space + 2), where));
    std::tie(hunk.old_start, hunk.old_count) = old_range;
    std::tie(hunk.new_start, hunk.new_count) = new_range;
    if (hunk.old_count + hunk.new_count == 0 || hunk.old_count > (1 << 30) || hunk.new_count > (1 << 30))
      return fail_at(where, "expected a hunk with lines in it");
    ++i;
    int64_t old_left = hunk.old_count, new_left = hunk.new_count;
    while (old_left > 0 || new_left > 0) {
      KILN_ASSIGN(std::string_view text,
                  line(i, fmt::format("{} more lines of the hunk at line {}", old_left + new_left, where.line)));
      char kind = text.empty() ? ' ' : text[0];
      int64_t& left = kind == '+' ? new_left : old_left;
      if ((kind != ' ' && kind != '-' && kind != '+') || left == 0 || (kind == ' ' && new_left == 0))
        return fail_at(at(i), "expected {} more lines of the hunk at line {} (' ' context, '-' removed, "
                       "'+' added)", old_left + new_left, where.line);
      if (kind == ' ') --new_left;
      --left;
      hunk.lines.push_back({kind, std::string(text.empty() ? text : text.substr(1)) + "\n"});
      ++i;
      if (i < lines_.size() && lines_[i].starts_with('\\')) {
        hunk.lines.back().text.pop_back();
        ++i;
      }
    }
    return hunk;
  }

  // The rules tying states to content (docs/patch-format.md).
  Result<> check_entry(const PatchEntry& e) const {
    Location where = at(static_cast<size_t>(e.line - 1));
    const bool old_file = e.old_state.kind == NodeKind::kFile;
    const bool new_file = e.new_state.kind == NodeKind::kFile;
    if (e.old_state.kind == NodeKind::kNone && e.new_state.kind == NodeKind::kNone)
      return fail_at(where, "{}: expected an old or a new state other than none", quote(e.path));
    if (e.path == "." && (e.old_state.kind != NodeKind::kDirectory || e.new_state.kind != NodeKind::kDirectory))
      return fail_at(where, "the root (.) can only change its mode and owner");
    if (!new_file && (!e.hunks.empty() || e.new_content))
      return fail_at(where, "{}: content comes with a new state 'file' only", quote(e.path));
    if (e.old_sha256 && !old_file) return fail_at(where, "{}: sha256 checks an old file only", quote(e.path));
    if (old_file && !new_file && !e.old_sha256)
      return fail_at(where, "{}: expected 'sha256 HEX' of the file this entry removes", quote(e.path));
    if (old_file && e.new_content && !e.old_sha256)
      return fail_at(where, "{}: expected 'sha256 HEX' of the file whose content this entry replaces",
                     quote(e.path));
    if (new_file && !old_file && e.hunks.empty() && !e.new_content)
      return fail_at(where, "{}: expected the new file's content (hunks or base64)", quote(e.path));
    if (!old_file && !e.hunks.empty()) {
      const Hunk& hunk = e.hunks.front();
      bool all_added = std::all_of(hunk.lines.begin(), hunk.lines.end(), [](const HunkLine& l) { return l.kind == '+'; });
      if (e.hunks.size() != 1 || hunk.old_start != 0 || hunk.old_count != 0 || !all_added)
        return fail_at(where, "{}: a new file's content is one hunk '@@ -0,0 +1,N @@' of added lines",
                       quote(e.path));
    }
    return {};
  }

  Lines lines_;
  std::string_view name_;
};

// --- Snapshots and diffs ----------------------------------------------------

bool is_text(std::string_view content) { return content.find('\0') == std::string_view::npos; }

NodeState state_of(const TreeNode& node) {
  NodeState state;
  state.uid = node.uid;
  state.gid = node.gid;
  switch (node.type) {
    case EntryType::kDirectory: state.kind = NodeKind::kDirectory; state.mode = node.mode; break;
    case EntryType::kSymlink: state.kind = NodeKind::kSymlink; state.target = node.link_target; break;
    default: state.kind = NodeKind::kFile; state.mode = node.mode; break;
  }
  return state;
}

bool is_special(const TreeNode& node) {
  return node.type != EntryType::kFile && node.type != EntryType::kDirectory && node.type != EntryType::kSymlink &&
         node.type != EntryType::kHardlink;
}

std::string display_path(std::string_view path) { return path.empty() ? "/" : std::string(path); }

class TreeDiffer {
 public:
  TreeDiffer(FileTree& a, FileTree& b) : a_(a), b_(b) {}

  Result<> walk(const std::string& relative, bool in_a, bool in_b) {
    std::set<std::string> names;
    std::string dir = "/" + relative;
    if (in_a) {
      KILN_ASSIGN(auto listed, a_.list_directory(dir));
      names.insert(listed.begin(), listed.end());
    }
    if (in_b) {
      KILN_ASSIGN(auto listed, b_.list_directory(dir));
      names.insert(listed.begin(), listed.end());
    }
    for (const std::string& name : names) {
      std::string child = relative.empty() ? name : relative + "/" + name;
      std::string absolute = "/" + child;
      std::optional<TreeNode> na, nb;
      if (in_a) {
        KILN_ASSIGN(na, a_.stat(absolute));
      }
      if (in_b) {
        KILN_ASSIGN(nb, b_.stat(absolute));
      }
      if ((na && is_special(*na)) || (nb && is_special(*nb))) {
        bool same = na && nb && na->type == nb->type && na->mode == nb->mode && na->uid == nb->uid && na->gid == nb->gid;
        if (same) continue;
        return fail(ErrorKind::kBadInput,
                    "{}: device nodes, fifos and sockets are not carried by kiln patches, and this one differs "
                    "between {} and {}",
                    absolute, a_.describe(), b_.describe());
      }
      bool dir_a = na && na->type == EntryType::kDirectory;
      bool dir_b = nb && nb->type == EntryType::kDirectory;
      if (dir_a && !dir_b) {
        KILN_TRY(walk(child, true, false));
        KILN_TRY(emit(child, na, nb));
      } else {
        KILN_TRY(emit(child, na, nb));
        if (dir_b) KILN_TRY(walk(child, dir_a, true));
      }
    }
    return {};
  }

  TreePatch patch;

 private:
  Result<> emit(const std::string& child, const std::optional<TreeNode>& na, const std::optional<TreeNode>& nb) {
    NodeSnapshot before, after;
    if (na) {
      KILN_ASSIGN(before, snapshot_node(a_, "/" + child));
    }
    if (nb) {
      KILN_ASSIGN(after, snapshot_node(b_, "/" + child));
    }
    if (auto entry = diff_nodes(child, before, after)) patch.entries.push_back(std::move(*entry));
    return {};
  }

  FileTree& a_;
  FileTree& b_;
};

// --- Checking ---------------------------------------------------------------

// A line of a file for a message: quoted, its newline left out.
std::string shown(std::string_view line) {
  bool newline = line.ends_with('\n');
  if (newline) line.remove_suffix(1);
  std::string text = line.size() > 72 ? std::string(line.substr(0, 69)) + "..." : std::string(line);
  return c_quoted(text) + (newline ? "" : " (no newline at the end)");
}

// The tree as it will be once the entries checked so far are applied:
// the tree itself, with planned states laid over it. Paths here are
// canonical (formats/tree/tree_path.h), so one node has one key however the
// patch names it.
class PlannedTree {
 public:
  explicit PlannedTree(FileTree& tree) : tree_(tree) {}

  FileTree& tree() { return tree_; }

  Result<std::string> resolve(std::string_view path, bool follow_final) {
    return resolve_tree_path(
        path, follow_final,
        [this](const std::string& canonical) -> Result<std::optional<std::string>> {
          bool special = false;
          KILN_ASSIGN(NodeState state, state_at(canonical, special));
          if (state.kind != NodeKind::kSymlink) return std::nullopt;
          return state.target;
        },
        tree_.describe());
  }

  // The node at a canonical path; `special` when the tree has a device,
  // fifo or socket there.
  Result<NodeState> state_at(const std::string& canonical, bool& special) {
    special = false;
    if (auto it = planned_.find(canonical); it != planned_.end()) return it->second.state;
    if (!tree_visible(canonical)) return NodeState{};
    KILN_ASSIGN(std::optional<TreeNode> node, tree_.stat(canonical));
    if (!node) return NodeState{};
    special = is_special(*node);
    return state_of(*node);
  }

  void plan(const std::string& canonical, const NodeState& old_state, const NodeState& new_state) {
    bool was_tree_directory = old_state.kind == NodeKind::kDirectory;
    if (auto it = planned_.find(canonical); it != planned_.end()) was_tree_directory = it->second.shows_tree;
    planned_[canonical] = {new_state, was_tree_directory && new_state.kind == NodeKind::kDirectory};
  }

  // The names a directory will hold once the planned entries are applied.
  Result<std::vector<std::string>> children(const std::string& canonical) {
    std::set<std::string> names;
    auto it = planned_.find(canonical);
    if (it == planned_.end() ? tree_visible(canonical) : it->second.shows_tree) {
      KILN_ASSIGN(auto listed, tree_.list_directory(canonical));
      for (const std::string& name : listed) names.insert(canonical == "/" ? "/" + name : canonical + "/" + name);
    }
    std::string prefix = canonical == "/" ? "/" : canonical + "/";
    for (auto p = planned_.lower_bound(prefix); p != planned_.end() && p->first.starts_with(prefix); ++p) {
      if (p->first.find('/', prefix.size()) != std::string::npos) continue;
      if (p->second.state.kind == NodeKind::kNone) names.erase(p->first);
      else names.insert(p->first);
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

 private:
  struct Planned {
    NodeState state;
    // Whether the tree's own children still show below it: it was a
    // directory in the tree and stays one.
    bool shows_tree = false;
  };

  // Whether the tree's node at `canonical` is still what a reader would
  // find: no planned ancestor replaced or removed the directory it is in.
  bool tree_visible(const std::string& canonical) const {
    for (std::string dir = parent_path_of(canonical);; dir = parent_path_of(dir)) {
      if (auto it = planned_.find(dir); it != planned_.end()) return it->second.shows_tree;
      if (dir == "/") return true;
    }
  }

  FileTree& tree_;
  std::map<std::string, Planned> planned_;
};

class PatchChecker {
 public:
  PatchChecker(FileTree& tree, std::string_view patch_name) : planned_(tree), patch_name_(patch_name) {}

  Result<PatchPlan> check(const TreePatch& patch) {
    PatchPlan plan;
    for (const PatchEntry& entry : patch.entries) {
      KILN_ASSIGN(std::optional<PatchPlan::Step> step, check_entry(entry));
      if (!step) continue;
      planned_.plan(step->path, step->old_state, step->new_state);
      if (step->content) plan.bytes_written += step->content->size();
      if (entry.old_state.kind == NodeKind::kNone) ++plan.created;
      else if (entry.new_state.kind == NodeKind::kNone) ++plan.removed;
      else ++plan.changed;
      plan.steps.push_back(std::move(*step));
    }
    if (rejections_.empty()) return plan;
    Error error{ErrorKind::kBadInput,
                fmt::format("{} does not apply to {}: {} {}; nothing was changed", patch_name_, tree().describe(),
                            rejections_.size(), rejections_.size() == 1 ? "rejection" : "rejections"),
                {}, {}};
    for (const Rejection& r : rejections_) {
      // A patch made in memory (not read from text) has no lines to name.
      std::string where = r.patch_line > 0 ? fmt::format("{}:{}", patch_name_, r.patch_line) : std::string(patch_name_);
      error.detail += fmt::format("{}{}: {}: {}", error.detail.empty() ? "" : "\n", where, r.path, r.reason);
    }
    return std::unexpected(std::move(error));
  }

 private:
  FileTree& tree() { return planned_.tree(); }

  void reject(const PatchEntry& entry, std::string reason, int patch_line = 0) {
    rejections_.push_back({entry.path, patch_line > 0 ? patch_line : entry.line, std::move(reason)});
  }

  // "/lib (which leads to /usr/lib)", when a symlink on the way moved it.
  static std::string named(const std::string& as_written, const std::string& canonical) {
    return as_written == canonical ? as_written : fmt::format("{} (which leads to {})", as_written, canonical);
  }

  Result<std::optional<PatchPlan::Step>> check_entry(const PatchEntry& entry) {
    std::string written = entry.path == "." ? "/" : "/" + entry.path;
    KILN_ASSIGN(std::string absolute, planned_.resolve(written, false));
    bool special = false;
    KILN_ASSIGN(NodeState now, planned_.state_at(absolute, special));
    if (special) {
      reject(entry, fmt::format("is a device node, fifo or socket in {}; kiln patches do not change those",
                                tree().describe()));
      return std::nullopt;
    }
    if (now != entry.old_state) {
      reject(entry, fmt::format("the patch expects '{}' here, {} has '{}'", entry.old_state.to_string(),
                                tree().describe(), now.to_string()));
      return std::nullopt;
    }
    PatchPlan::Step step{absolute, entry.old_state, entry.new_state, std::nullopt};
    if (absolute != "/") {
      KILN_ASSIGN(NodeState parent, planned_.state_at(parent_path_of(absolute), special));
      if (parent.kind != NodeKind::kDirectory) {
        reject(entry, fmt::format("its directory {} is not {}", named(parent_path_of(written), parent_path_of(absolute)),
                                  parent.kind == NodeKind::kNone ? "in " + tree().describe() : "a directory"));
        return std::nullopt;
      }
    }
    if (entry.old_state.kind == NodeKind::kDirectory && entry.new_state.kind != NodeKind::kDirectory) {
      KILN_ASSIGN(auto left, planned_.children(absolute));
      if (!left.empty()) {
        reject(entry, fmt::format("the directory is to go but still holds {}{}", left.front(),
                                  left.size() > 1 ? fmt::format(" and {} more", left.size() - 1) : ""));
        return std::nullopt;
      }
    }
    const bool old_file = entry.old_state.kind == NodeKind::kFile;
    std::string base;
    if (old_file && (entry.old_sha256 || !entry.hunks.empty())) {
      KILN_ASSIGN(base, tree().read_file(absolute));
    }
    if (entry.old_sha256 && sha256_hex(base) != *entry.old_sha256) {
      reject(entry, fmt::format("the content in {} is not the one the patch was made from (sha256 {}, the patch "
                                "expects {})",
                                tree().describe(), sha256_hex(base).substr(0, 16), entry.old_sha256->substr(0, 16)));
      return std::nullopt;
    }
    if (!entry.hunks.empty()) {
      HunkResult result = apply_hunks(base, entry.hunks);
      for (const HunkRejection& r : result.rejections) {
        std::string where = r.past_end
                                ? fmt::format("the file ends at line {} where the patch expects {}", r.line - 1,
                                              shown(r.expected))
                                : fmt::format("line {} reads {} where the patch expects {}", r.line, shown(r.found),
                                              shown(r.expected));
        reject(entry, fmt::format("hunk {} {} does not apply: {}", r.hunk_index + 1, r.hunk_header, where),
               entry.hunks[r.hunk_index].patch_line);
      }
      if (!result.rejections.empty()) return std::nullopt;
      step.content = std::move(result.text);
    } else if (entry.new_content) {
      step.content = *entry.new_content;
    }
    return step;
  }

  PlannedTree planned_;
  std::string_view patch_name_;
  std::vector<Rejection> rejections_;
};

// One step carried out. A node's old state goes back by the same path.
Result<> apply_step(FileTree& tree, const std::string& path, const NodeState& from, const NodeState& to,
                    const std::optional<std::string>& content, int64_t mtime) {
  TreeAttributes attributes{to.mode, to.uid, to.gid, mtime};
  if (from.kind != NodeKind::kNone && from.kind != to.kind) KILN_TRY(tree.remove(path));
  switch (to.kind) {
    case NodeKind::kNone: break;
    case NodeKind::kFile:
      if (content) KILN_TRY(tree.write_file(path, *content, attributes));
      if (from.kind == NodeKind::kFile && from.mode != to.mode) KILN_TRY(tree.set_mode(path, to.mode));
      if (from.kind == NodeKind::kFile && (from.uid != to.uid || from.gid != to.gid))
        KILN_TRY(tree.set_owner(path, to.uid, to.gid));
      break;
    case NodeKind::kDirectory: KILN_TRY(tree.make_directory(path, attributes)); break;
    case NodeKind::kSymlink: KILN_TRY(tree.make_symlink(path, to.target, attributes)); break;
  }
  return {};
}

// Puts a node back as a snapshot saw it, whatever a failed step left there.
Result<> restore_node(FileTree& tree, const std::string& path, const NodeSnapshot& before) {
  KILN_ASSIGN(std::optional<TreeNode> now, tree.stat(path));
  bool keep_directory = now && now->type == EntryType::kDirectory && before.state.kind == NodeKind::kDirectory;
  if (now && !keep_directory) KILN_TRY(tree.remove(path));
  std::optional<std::string> content;
  if (before.state.kind == NodeKind::kFile) content = before.content;
  NodeState from = keep_directory ? before.state : NodeState{};
  return apply_step(tree, path, from, before.state, content, before.mtime);
}

}  // namespace

std::string NodeState::to_string() const {
  switch (kind) {
    case NodeKind::kNone: return "none";
    case NodeKind::kFile: return fmt::format("file {:04o} {}", mode, owner_text(*this));
    case NodeKind::kDirectory: return fmt::format("directory {:04o} {}", mode, owner_text(*this));
    case NodeKind::kSymlink: return fmt::format("symlink {} {}", quote(target), owner_text(*this));
  }
  return "none";
}

Result<TreePatch> parse_tree_patch(std::string_view text, std::string_view name) {
  return PatchParser(text, name).parse();
}

std::string write_tree_patch(const TreePatch& patch) {
  std::string out = std::string(kMagic) + "\n";
  for (const std::string& comment : patch.comments) out += "# " + comment + "\n";
  for (const PatchEntry& entry : patch.entries) {
    out += fmt::format("\ndiff {}\nold {}\nnew {}\n", quote(entry.path), entry.old_state.to_string(),
                       entry.new_state.to_string());
    if (entry.old_sha256) out += "sha256 " + *entry.old_sha256 + "\n";
    if (entry.new_content) {
      out += fmt::format("base64 {}\n", entry.new_content->size());
      std::string encoded = base64_encode(*entry.new_content);
      for (size_t at = 0; at < encoded.size(); at += kBase64Columns)
        out += encoded.substr(at, kBase64Columns) + "\n";
    }
    if (!entry.hunks.empty()) {
      out += "--- " + a_path(entry) + "\n+++ " + b_path(entry) + "\n";
      for (const Hunk& hunk : entry.hunks) {
        out += hunk.header() + "\n";
        for (const HunkLine& line : hunk.lines) {
          out += line.kind;
          out += line.text;
          if (!line.text.ends_with('\n')) out += "\n\\ No newline at end of file\n";
        }
      }
    }
  }
  return out;
}

Result<NodeSnapshot> snapshot_node(FileTree& tree, std::string_view path) {
  KILN_ASSIGN(std::optional<TreeNode> node, tree.stat(path));
  NodeSnapshot out;
  if (!node) return out;
  if (is_special(*node))
    return fail(ErrorKind::kBadInput, "{}: a device node, fifo or socket in {}; kiln patches do not carry those",
                display_path(path), tree.describe());
  out.state = state_of(*node);
  out.mtime = node->mtime;
  if (out.state.kind == NodeKind::kFile) {
    KILN_ASSIGN(out.content, tree.read_file(path));
  }
  return out;
}

std::optional<PatchEntry> diff_nodes(std::string path, const NodeSnapshot& before, const NodeSnapshot& after) {
  const bool old_file = before.state.kind == NodeKind::kFile;
  const bool new_file = after.state.kind == NodeKind::kFile;
  const bool same_content = old_file && new_file && before.content == after.content;
  if (before.state == after.state && (!new_file || same_content)) return std::nullopt;
  PatchEntry entry;
  entry.path = std::move(path);
  entry.old_state = before.state;
  entry.new_state = after.state;
  if (new_file && !same_content) {
    std::string_view base = old_file ? std::string_view(before.content) : std::string_view();
    if (is_text(base) && is_text(after.content) && !after.content.empty()) {
      entry.hunks = diff_lines(base, after.content);
    } else {
      entry.new_content = after.content;
    }
  }
  if (old_file && (!new_file || entry.new_content)) entry.old_sha256 = sha256_hex(before.content);
  return entry;
}

Result<TreePatch> diff_trees(FileTree& old_tree, FileTree& new_tree) {
  TreeDiffer differ(old_tree, new_tree);
  KILN_TRY(differ.walk("", true, true));
  return std::move(differ.patch);
}

Result<PatchPlan> check_tree_patch(FileTree& tree, const TreePatch& patch, std::string_view patch_name) {
  return PatchChecker(tree, patch_name).check(patch);
}

Result<> apply_patch_plan(FileTree& tree, const PatchPlan& plan, int64_t mtime) {
  // What each step changed, to undo it if a later one fails (a full disk,
  // a read-only file): a patch is applied whole or not at all.
  std::vector<NodeSnapshot> undo;
  undo.reserve(plan.steps.size());
  for (const PatchPlan::Step& step : plan.steps) {
    auto before = snapshot_node(tree, step.path);
    auto done = before ? apply_step(tree, step.path, step.old_state, step.new_state, step.content, mtime)
                       : Result<>(std::unexpected(before.error()));
    if (before) undo.push_back(std::move(*before));
    if (done) continue;
    Error error = std::move(done).error();
    for (size_t i = undo.size(); i-- > 0;) {
      if (auto restored = restore_node(tree, plan.steps[i].path, undo[i]); !restored) {
        error.detail += (error.detail.empty() ? "" : "\n") +
                        fmt::format("and undoing the patch failed at {}, which is left changed: {}",
                                    plan.steps[i].path, restored.error().message);
        return std::unexpected(std::move(error));
      }
    }
    error.message += "; the steps already applied were undone";
    return std::unexpected(std::move(error));
  }
  return {};
}

}  // namespace kiln
