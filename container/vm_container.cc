#include "container/vm_container.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <filesystem>
#include <set>

#include "base/size.h"
#include "fetch/uri_fetch.h"
#include "formats/ext4/ext4_image.h"
#include "formats/domain/xen_config.h"

namespace kiln {
namespace {

constexpr size_t kMaxLabelLength = 16;

bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

bool blank_line(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return is_blank(c); });
}

std::string_view trim_right(std::string_view text) {
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

// "expected 2 fields", "expected 3 or 4 fields", "expected 3 to 7 fields".
std::string field_count(const ExpressionInfo& info) {
  if (info.min_fields == info.max_fields) return fmt::format("{} fields", info.min_fields);
  if (info.max_fields == info.min_fields + 1) return fmt::format("{} or {} fields", info.min_fields, info.max_fields);
  return fmt::format("{} to {} fields", info.min_fields, info.max_fields);
}

std::string names_of_expressions() {
  std::string out;
  for (const ExpressionInfo& info : container_expressions()) {
    if (!out.empty()) out += ", ";
    out += info.name;
  }
  return out;
}

// --- Field meanings ---------------------------------------------------------

// `archive URI` then `patch URI` / `fork URI` options, from field `first` on.
Result<ArchiveEdit> archive_edit(const RawExpression& raw, size_t first, std::string_view name) {
  ArchiveEdit edit;
  const RawField& keyword = raw.fields[first];
  if (keyword.text != "archive")
    return fail_at(keyword.where, "expected 'archive' and the archive's URI in [{}], found '{}'", name, keyword.text);
  edit.archive = raw.fields[first + 1].text;
  for (size_t i = first + 2; i < raw.fields.size(); i += 2) {
    const RawField& option = raw.fields[i];
    std::string* slot = option.text == "patch" ? &edit.patch_uri : option.text == "fork" ? &edit.fork_uri : nullptr;
    if (!slot) return fail_at(option.where, "expected the option 'patch URI' or 'fork URI' in [{}], found '{}'", name,
                              option.text);
    if (!slot->empty()) return fail_at(option.where, "expected '{}' once in [{}], found it twice", option.text, name);
    if (i + 1 >= raw.fields.size())
      return fail_at(raw.close, "expected a URI after '{}' in [{}]", option.text, name);
    *slot = raw.fields[i + 1].text;
  }
  return edit;
}

Result<ExpressionBody> parse_create(const RawExpression& raw) {
  return CreateExpression{raw.fields[0].text, raw.fields[1].text};
}

Result<ExpressionBody> parse_image(const RawExpression& raw) {
  ImageExpression image;
  image.path = raw.fields[0].text;
  if (raw.fields.size() == 4) image.fs_type = raw.fields[3].text;
  const RawField& size_field = raw.fields[1];
  auto size = parse_size(size_field.text);
  if (!size) return fail_at(size_field.where, "expected the image size: {}", size.error().message);
  image.size_bytes = *size;
  if (uint64_t minimum = ext4_minimum_size(image.fs_type); image.size_bytes < minimum)
    return fail_at(size_field.where,
                   "expected an image size of at least {}, found {} (ext3 and ext4 need 8M for their journal, ext2 1M)",
                   recipe_size(minimum), size_field.text);
  image.label = raw.fields[2].text;
  if (image.label.size() > kMaxLabelLength)
    return fail_at(raw.fields[2].where, "expected a filesystem label of at most {} bytes, found '{}'", kMaxLabelLength,
                   image.label);
  if (image.fs_type != "ext2" && image.fs_type != "ext3" && image.fs_type != "ext4")
    return fail_at(raw.fields[3].where, "expected the filesystem type ext4, ext3 or ext2, found '{}'", image.fs_type);
  return image;
}

Result<ExpressionBody> parse_populate(const RawExpression& raw) {
  return PopulateExpression{raw.fields[0].text, raw.fields[1].text, raw.fields[2].text};
}

// A path inside the archive's own tree: absolute, as the archive's root is /.
Result<> check_inside_path(const RawField& field, std::string_view name) {
  if (!field.text.starts_with('/'))
    return fail_at(field.where, "expected an absolute path inside the archive in [{}], like /etc/hostname, found '{}'",
                   name, field.text);
  return {};
}

Result<ExpressionBody> parse_replace(const RawExpression& raw) {
  KILN_TRY(check_inside_path(raw.fields[0], "replace"));
  KILN_ASSIGN(ArchiveEdit edit, archive_edit(raw, 1, "replace"));
  return ReplaceExpression{raw.fields[0].text, std::move(edit), raw.text};
}

Result<ExpressionBody> parse_copy(const RawExpression& raw) {
  KILN_TRY(check_inside_path(raw.fields[0], "copy"));
  KILN_ASSIGN(ArchiveEdit edit, archive_edit(raw, 2, "copy"));
  return CopyExpression{raw.fields[0].text, raw.fields[1].text, std::move(edit)};
}

Result<ExpressionBody> parse_patch(const RawExpression& raw) {
  return PatchExpression{raw.fields[0].text, raw.fields[1].text, raw.fields.size() > 2 ? raw.fields[2].text : ""};
}

std::vector<std::string> some(std::initializer_list<std::string> items) {
  std::vector<std::string> out;
  for (const std::string& item : items)
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<std::string> nothing(const ExpressionBody&) { return {}; }
std::vector<std::string> create_outputs(const ExpressionBody& b) { return some({std::get<CreateExpression>(b).uri}); }
std::vector<std::string> image_outputs(const ExpressionBody& b) { return some({std::get<ImageExpression>(b).path}); }
std::vector<std::string> populate_inputs(const ExpressionBody& b) {
  const auto& e = std::get<PopulateExpression>(b);
  return some({e.image, e.archive});
}
std::vector<std::string> replace_inputs(const ExpressionBody& b) {
  return some({std::get<ReplaceExpression>(b).edit.archive});
}
std::vector<std::string> replace_outputs(const ExpressionBody& b) {
  const auto& e = std::get<ReplaceExpression>(b).edit;
  return some({e.patch_uri, e.fork_uri});
}
std::vector<std::string> copy_inputs(const ExpressionBody& b) {
  const auto& e = std::get<CopyExpression>(b);
  return some({e.source, e.edit.archive});
}
std::vector<std::string> copy_outputs(const ExpressionBody& b) {
  const auto& e = std::get<CopyExpression>(b).edit;
  return some({e.patch_uri, e.fork_uri});
}
std::vector<std::string> patch_inputs(const ExpressionBody& b) {
  const auto& e = std::get<PatchExpression>(b);
  return some({e.target, e.patch});
}
// Patching in place changes the target but makes nothing new.
std::vector<std::string> patch_outputs(const ExpressionBody& b) { return some({std::get<PatchExpression>(b).fork}); }

const std::array<ExpressionInfo, 6> kExpressions = {{
    {ExpressionKind::kCreate, "create", "DIR URI", 2, 2, false,
     "[create\n /etc/\n file:///var/images/etc.cpio.gz\n][end]",
     "Packs the local directory DIR into a compressed cpio (newc) archive and stores it at URI: a file "
     "(written atomically), ftp (STOR) or http(s) (PUT). Entries are named relative to DIR, so an "
     "archive of /etc/ holds passwd, not etc/passwd. The URI's suffix picks the compression: .xz, .zst, "
     "no compression for a plain .cpio, gzip otherwise. Owners, modes, times and symlinks are kept; "
     "hard links become separate copies.",
     parse_create, nothing, create_outputs},
    {ExpressionKind::kImage, "image", "PATH SIZE LABEL [FSTYPE]", 3, 4, false,
     "[image /var/images/fido-etc\n 50MB\n fido_etc] [end]",
     "Creates a sparse filesystem image file of SIZE (50MB, 2G: MB and GB are powers of 1000, M and G "
     "of 1024) at PATH, formatted ext3, or FSTYPE (ext4, ext3 or ext2) when given, and labelled LABEL (at "
     "most 16 bytes). SIZE is at least 8M for ext3 and ext4 (their journal needs it) and 1M for ext2. An "
     "existing file at PATH is replaced. The image is made with mke2fs and filled with libext2fs, without "
     "mounting anything.",
     parse_image, nothing, image_outputs},
    {ExpressionKind::kPopulate, "populate image", "IMAGE MOUNT-POINT URI", 3, 3, false,
     "[populate image\n /var/images/fido-etc\n /mnt/\n ftp://foo.org/images/etc.cpio.gz\n][end]",
     "Fetches the archive at URI (tar or cpio, plain or gzip, xz, zstd) and expands it into the root "
     "of the filesystem image IMAGE, keeping owners, modes, times, links and device nodes; a later "
     "entry replaces an earlier one at the same path. Nothing is mounted: the MOUNT-POINT field is "
     "kept for compatibility with vm-container files and is not used.",
     parse_populate, populate_inputs, nothing},
    {ExpressionKind::kReplace, "replace", "PATH archive URI [patch URI] [fork URI] TEXT", 3, 7, true,
     "[replace /etc/HOSTNAME\narchive http://foo.org/images/etc.cpio.gz\n\nFCDOBBS\n\n] [end]",
     "Fetches and expands the archive once per run, then writes TEXT as the file PATH inside it "
     "(PATH is absolute in the archive's own tree: /HOSTNAME in an archive made from /etc/), creating "
     "it (mode 0644, root) if it is missing. Later expressions on the same archive see the change. "
     "`patch URI` stores the change as a kiln patch (the original against the modified file); `fork "
     "URI` packs the modified archive, in the original's format and compression, and stores it at "
     "URI. Without fork, the change stays in the run's working copy.",
     parse_replace, replace_inputs, replace_outputs},
    {ExpressionKind::kCopy, "copy", "PATH SOURCE-URI archive URI [patch URI] [fork URI]", 4, 8, false,
     "[copy /etc/resolv.conf\n http://foo.org/files/resolv.conf\n archive http://foo.org/images/etc.cpio.gz\n][end]",
     "Like replace, but the new content of PATH is the whole file fetched from SOURCE-URI. It takes "
     "the same patch and fork options.",
     parse_copy, copy_inputs, copy_outputs},
    {ExpressionKind::kPatch, "patch", "TARGET-URI PATCH-URI [FORK-URI]", 2, 3, false,
     "[patch\n file:///var/images/fido-etc\n ftp://foo.org/images/fido-etc.patch1\n "
     "file:///var/images/fido-etc-patched\n][end]",
     "Fetches the kiln patch at PATCH-URI (see docs/patch-format.md) and applies it to TARGET-URI: a "
     "filesystem image (changed through libext2fs, no mount) or an archive (rewritten in its own format "
     "and compression). With FORK-URI the patched copy is stored there and the target is left as it "
     "was; without it, a local target is patched in place. A patch that does not apply changes "
     "nothing, and the error lists every rejected hunk with its file and line.",
     parse_patch, patch_inputs, patch_outputs},
}};

// --- Scanning ---------------------------------------------------------------

// The file as lines (without their newlines), read expression by expression.
class Scanner {
 public:
  Scanner(std::string_view text, std::string_view file) : file_(file) {
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      bool newline = end != std::string_view::npos;
      if (!newline) end = text.size();
      lines_.push_back(text.substr(start, end - start));
      newlines_.push_back(newline);
      start = end + 1;
    }
  }

  size_t line_count() const { return lines_.size(); }
  std::string_view line(size_t i) const { return lines_[i]; }
  bool has_newline(size_t i) const { return newlines_[i]; }
  Location location(size_t line, size_t column) const {
    return {std::string(file_), static_cast<int>(line) + 1, static_cast<int>(column) + 1};
  }

  // Whether line i begins an expression: '[' and a letter first.
  bool starts_expression(size_t i) const {
    std::string_view text = lines_[i];
    size_t first = text.find_first_not_of(" \t\r\f\v");
    return first != std::string_view::npos && text[first] == '[' && first + 1 < text.size() &&
           std::isalpha(static_cast<unsigned char>(text[first + 1]));
  }

  // Scans the expression starting on line `i`; `i` ends on its last line.
  Result<std::pair<const ExpressionInfo*, RawExpression>> expression(size_t& i) {
    line_ = i;
    column_ = lines_[i].find('[');
    RawExpression raw;
    raw.where = here();
    ++column_;
    Location name_at = here();
    std::string first = word();
    if (first == "end" && peek() == ']')
      return fail_at(raw.where, "expected an expression before [end]: this [end] closes nothing");
    const ExpressionInfo* info = nullptr;
    for (const ExpressionInfo& candidate : container_expressions())
      if (candidate.name.substr(0, candidate.name.find(' ')) == first) info = &candidate;
    if (!info)
      return fail_at(name_at, "expected an expression ({}) after '[', found '{}'", names_of_expressions(), first);
    // Names of two words ("populate image") take whitespace between them.
    std::string_view rest = info->name.substr(std::min(info->name.size(), first.size()));
    while (!rest.empty()) {
      rest.remove_prefix(1);
      std::string_view expected = rest.substr(0, rest.find(' '));
      rest.remove_prefix(expected.size());
      skip_whitespace();
      Location at = here();
      std::string next = word();
      if (next != expected)
        return fail_at(at, "expected '{}' after '{}': the expression is [{} {}]", expected, first, info->name,
                       info->fields);
    }
    if (info->has_text) KILN_TRY(text_fields(*info, raw));
    else KILN_TRY(fields(*info, raw));
    if (static_cast<int>(raw.fields.size()) < info->min_fields)
      return fail_at(raw.close, "expected {} for [{} {}], found {}", field_count(*info), info->name, info->fields,
                     raw.fields.size());
    if (static_cast<int>(raw.fields.size()) > info->max_fields)
      return fail_at(raw.fields[static_cast<size_t>(info->max_fields)].where,
                     "expected {} for [{} {}], found {}", field_count(*info), info->name, info->fields,
                     raw.fields.size());
    i = line_;
    return std::pair{info, std::move(raw)};
  }

 private:
  Location here() const { return location(line_, column_); }
  bool at_end() const { return line_ >= lines_.size(); }
  // The character at the cursor; '\n' at the end of a line, '\0' at the end.
  char peek() const {
    if (at_end()) return '\0';
    return column_ < lines_[line_].size() ? lines_[line_][column_] : '\n';
  }
  char peek_next() const {
    if (at_end()) return '\0';
    if (column_ + 1 < lines_[line_].size()) return lines_[line_][column_ + 1];
    return column_ + 1 == lines_[line_].size() ? '\n' : (line_ + 1 < lines_.size() ? '\n' : '\0');
  }
  void advance() {
    if (column_ < lines_[line_].size()) {
      ++column_;
    } else {
      ++line_;
      column_ = 0;
    }
  }
  static bool space(char c) { return c == '\n' || is_blank(c); }
  void skip_whitespace() {
    while (!at_end() && space(peek())) advance();
  }
  std::string word() {
    std::string out;
    while (!at_end() && std::isalpha(static_cast<unsigned char>(peek()))) out += peek(), advance();
    return out;
  }
  // A ']' that closes: followed by whitespace, '[' or the end of the file.
  bool closing_bracket() const {
    char next = peek_next();
    return peek() == ']' && (next == '\0' || next == '[' || space(next));
  }

  // Where the file ends: just after the last character of its last line.
  Location end_of_file() const { return location(lines_.size() - 1, lines_.back().size()); }

  // After a closing ']': whitespace, "[end]", then nothing else on the line.
  Result<> end_marker(const ExpressionInfo& info, RawExpression& raw) {
    raw.close = here();
    advance();
    skip_whitespace();
    if (at_end())
      return fail_at(end_of_file(), "expected [end] after the ']' at {}:{} that closes [{}] (opened at line {}), "
                     "found the end of the file", raw.close.line, raw.close.column, info.name, raw.where.line);
    std::string_view rest = lines_[line_].substr(column_);
    if (!rest.starts_with("[end]"))
      return fail_at(here(), "expected [end] after the ']' at {}:{} that closes [{}] (opened at line {}), found '{}'",
                     raw.close.line, raw.close.column, info.name, raw.where.line, trim_right(rest));
    column_ += 5;
    while (column_ < lines_[line_].size() && is_blank(lines_[line_][column_])) ++column_;
    if (column_ < lines_[line_].size())
      return fail_at(here(), "expected the end of the line after [end], found '{}'",
                     trim_right(lines_[line_].substr(column_)));
    return {};
  }

  Result<> fields(const ExpressionInfo& info, RawExpression& raw) {
    while (true) {
      skip_whitespace();
      if (at_end())
        return fail_at(end_of_file(),
                       "expected ']' and [end] to close [{}] (opened at line {}), found the end of the file",
                       info.name, raw.where.line);
      if (closing_bracket()) return end_marker(info, raw);
      RawField field{{}, here()};
      while (!at_end() && !space(peek()) && !closing_bracket()) field.text += peek(), advance();
      raw.fields.push_back(std::move(field));
    }
  }

  // The closing line of a text: it ends in "]", blanks, "[end]", blanks.
  std::optional<size_t> closing_column(size_t i) const {
    std::string_view text = trim_right(lines_[i]);
    if (!text.ends_with("[end]")) return std::nullopt;
    text.remove_suffix(5);
    text = trim_right(text);
    if (!text.ends_with(']')) return std::nullopt;
    return text.size() - 1;
  }

  // Splits line i into option fields when it holds only `patch URI` and
  // `fork URI` pairs.
  std::optional<std::vector<RawField>> option_line(size_t i) const {
    std::vector<RawField> out;
    std::string_view text = lines_[i];
    size_t pos = 0;
    while (true) {
      while (pos < text.size() && is_blank(text[pos])) ++pos;
      if (pos == text.size()) break;
      size_t end = pos;
      while (end < text.size() && !is_blank(text[end])) ++end;
      out.push_back({std::string(text.substr(pos, end - pos)), location(i, pos)});
      pos = end;
    }
    if (out.empty() || out.size() % 2 != 0) return std::nullopt;
    for (size_t k = 0; k < out.size(); k += 2)
      if (out[k].text != "patch" && out[k].text != "fork") return std::nullopt;
    return out;
  }

  Result<> text_fields(const ExpressionInfo& info, RawExpression& raw) {
    auto eof = [&] {
      return fail_at(end_of_file(),
                     "expected a line ending in '] [end]' to close [{}] (opened at line {}), found the end of the "
                     "file", info.name, raw.where.line);
    };
    // The required fields, over as many lines as they take.
    while (raw.fields.size() < static_cast<size_t>(info.min_fields)) {
      skip_whitespace();
      if (at_end()) return eof();
      if (closing_bracket()) return end_marker(info, raw);
      RawField field{{}, here()};
      while (!at_end() && !space(peek()) && !closing_bracket()) field.text += peek(), advance();
      raw.fields.push_back(std::move(field));
    }
    // Options on the rest of that line.
    while (!at_end() && is_blank(peek())) advance();
    while (!at_end() && peek() != '\n') {
      if (closing_bracket()) return end_marker(info, raw);
      RawField field{{}, here()};
      while (!at_end() && !space(peek()) && !closing_bracket()) field.text += peek(), advance();
      raw.fields.push_back(std::move(field));
      while (!at_end() && is_blank(peek())) advance();
    }
    if (at_end()) return eof();
    size_t i = line_ + 1;
    // Option lines, then the text up to the closing line.
    for (; i < lines_.size() && !closing_column(i); ++i) {
      auto options = option_line(i);
      if (!options) break;
      raw.fields.insert(raw.fields.end(), options->begin(), options->end());
    }
    std::vector<std::string_view> text;
    for (; i < lines_.size() && !closing_column(i); ++i) text.push_back(lines_[i]);
    if (i == lines_.size()) return eof();
    if (!text.empty() && blank_line(text.front())) text.erase(text.begin());
    if (!text.empty() && blank_line(text.back())) text.pop_back();
    for (std::string_view line : text) raw.text += std::string(line) + "\n";
    size_t close = *closing_column(i);
    std::string_view before = lines_[i].substr(0, close);
    if (!blank_line(before)) raw.text += before;
    raw.close = location(i, close);
    line_ = i;
    return {};
  }

  std::string_view file_;
  std::vector<std::string_view> lines_;
  std::vector<bool> newlines_;
  size_t line_ = 0;
  size_t column_ = 0;
};

// An expression may not need what only a later one makes.
Result<> check_order(const std::vector<Expression>& expressions) {
  for (size_t i = 0; i < expressions.size(); ++i) {
    const ExpressionInfo& info = expression_info(expressions[i].kind());
    for (const std::string& input : info.inputs(expressions[i].body)) {
      std::string key = resource_key(input);
      auto makes = [&](size_t j) {
        auto outputs = expression_info(expressions[j].kind()).outputs(expressions[j].body);
        return std::any_of(outputs.begin(), outputs.end(), [&](const std::string& o) { return resource_key(o) == key; });
      };
      bool earlier = false;
      for (size_t j = 0; j < i && !earlier; ++j) earlier = makes(j);
      if (earlier) continue;
      for (size_t j = i + 1; j < expressions.size(); ++j)
        if (makes(j))
          return fail_at(expressions[i].where, "expected {} before this [{}]: it needs {}, which that expression "
                         "makes; move it up",
                         expressions[j].describe(), info.name, input);
    }
  }
  return {};
}

}  // namespace

std::string Expression::describe() const {
  return fmt::format("[{}] at {}", expression_info(kind()).name, where.to_string());
}

std::span<const ExpressionInfo> container_expressions() { return kExpressions; }

const ExpressionInfo& expression_info(ExpressionKind kind) { return kExpressions[static_cast<size_t>(kind)]; }

std::string resource_key(std::string_view uri) {
  if (auto local = local_path_of(uri)) {
    std::string normal = local->lexically_normal().string();
    while (normal.size() > 1 && normal.ends_with('/')) normal.pop_back();
    return normal;
  }
  return std::string(uri);
}

Result<ContainerFile> parse_container_file(std::string_view text, std::string_view file_name) {
  Scanner scanner(text, file_name);
  XenConfigParser xen(file_name);
  ContainerFile file;
  for (size_t i = 0; i < scanner.line_count(); ++i) {
    if (!scanner.starts_expression(i)) {
      file.stripped += scanner.line(i);
      if (scanner.has_newline(i)) file.stripped += '\n';
      KILN_TRY(xen.feed_line(scanner.line(i), static_cast<int>(i) + 1));
      continue;
    }
    KILN_ASSIGN(auto scanned, scanner.expression(i));
    auto& [info, raw] = scanned;
    KILN_ASSIGN(ExpressionBody body, info->parse(raw));
    file.expressions.push_back({std::move(body), raw.where});
  }
  KILN_ASSIGN(file.domain, xen.finish());
  KILN_TRY(check_order(file.expressions));
  return file;
}

}  // namespace kiln
