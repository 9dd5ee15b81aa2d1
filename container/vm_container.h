// VmContainer: the "domain container" file of the 2005 Xen deployment work
// (vm-container). It is a Xen domain config with bracketed expressions mixed
// in, which prepare the domain's filesystems from canned archives before it
// starts. This is the syntax: which expressions there are, how their fields
// are written, and what the stripped, standard Xen config is. Running the
// expressions is container/container_runner.h's job.
//
// Lines. An expression begins a line: its first non-blank characters are
// '[' and a letter. Every other line is a Xen config line (formats/
// xen_config.h); those lines, verbatim and in order, are the stripped config
// (`kiln container --stripped`), and the keys they set are checked like any
// Xen config's, with their line numbers in the container file.
//
// Expressions. `[NAME FIELD...]` then `[end]`, with whitespace (spaces, tabs
// and newlines) between fields, between ']' and '[end]', and around them:
//
//   [image /var/images/fido-etc         [populate image
//    50MB                                /var/images/fido-etc
//    fido_etc] [end]                     /mnt/
//                                        ftp://foo.org/images/etc.cpio.gz
//                                       ][end]
//
// A ']' closes the expression when whitespace, '[' or the end of the file
// follows it; inside a field (http://[::1]:8080/x) it is part of the field.
// Nothing but whitespace may follow [end] on its line.
//
// [replace PATH archive URI OPTIONS] carries a text: the lines after the
// line where its fields end, up to the line that ends in "] [end]"
// (spacing free). A blank first line and a blank last line of the text
// are separators, not content; every other line is kept as written, each
// with its newline. Text before the ']' on the closing line is kept too,
// without a newline. Fields may be split over lines; OPTIONS lines directly
// follow, so a text that starts with "patch X" or "fork X" needs the blank
// separator line first.
//
// The options of [replace] and [copy], after `archive URI`, each at most once:
//   patch URI   write the change as a kiln patch (original against modified)
//   fork URI    pack the modified archive and store it at URI
//
// Errors are ErrorKind::kBadInput at FILE:LINE:COL: "expected [end] ...",
// "expected an expression (create, image, ...)", "expected 3 or 4 fields
// for [image] ...", and Xen config errors at FILE:LINE.
//
// Order. One pass, in order: an expression that needs what a later one
// makes (a [populate image] of an archive that a later [create] packs) is
// an error naming both, checked before anything runs.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

// [create DIR URI]: pack the local tree DIR into a compressed cpio (newc)
// archive at URI (file, ftp, or http PUT).
struct CreateExpression {
  std::string directory;
  std::string uri;
};

// [image PATH SIZE LABEL [FSTYPE]]: a sparse filesystem image.
struct ImageExpression {
  std::string path;
  uint64_t size_bytes = 0;
  std::string label;
  std::string fs_type = "ext3";
};

// [populate image IMAGE MOUNT-POINT URI]: expand an archive into an image.
struct PopulateExpression {
  std::string image;
  std::string mount_point;  // kept for compatibility; nothing is mounted
  std::string archive;
};

// The archive that [replace] and [copy] edit, and what to do with the result.
struct ArchiveEdit {
  std::string archive;
  std::string patch_uri;  // empty: no patch asked for
  std::string fork_uri;   // empty: no fork asked for
};

// [replace PATH archive URI OPTIONS TEXT]
struct ReplaceExpression {
  std::string path;
  ArchiveEdit edit;
  std::string text;
};

// [copy PATH SOURCE-URI archive URI OPTIONS]
struct CopyExpression {
  std::string path;
  std::string source;
  ArchiveEdit edit;
};

// [patch TARGET-URI PATCH-URI [FORK-URI]]
struct PatchExpression {
  std::string target;
  std::string patch;
  std::string fork;  // empty: patch the target in place
};

// In the order of ExpressionKind and of the table.
using ExpressionBody = std::variant<CreateExpression, ImageExpression, PopulateExpression, ReplaceExpression,
                                    CopyExpression, PatchExpression>;
enum class ExpressionKind { kCreate, kImage, kPopulate, kReplace, kCopy, kPatch };

struct Expression {
  ExpressionBody body;
  Location where;  // the opening '['

  ExpressionKind kind() const { return static_cast<ExpressionKind>(body.index()); }
  // "[populate image] at fido.domain:12:1": how messages name it.
  std::string describe() const;
};

// An expression as scanned, before its fields mean anything.
struct RawField {
  std::string text;
  Location where;
};
struct RawExpression {
  std::vector<RawField> fields;
  std::string text;     // [replace]'s text
  Location where;       // the opening '['
  Location close;       // the closing ']'
};

// One row of the expression table, which drives the parser, `kiln help
// container`, docs/container.md and the order check.
struct ExpressionInfo {
  ExpressionKind kind;
  std::string_view name;     // "populate image"
  std::string_view fields;   // "IMAGE MOUNT-POINT URI"
  int min_fields;
  int max_fields;
  bool has_text;             // [replace]: a text follows the fields
  std::string_view example;  // the layout of the original documents
  std::string_view doc;
  Result<ExpressionBody> (*parse)(const RawExpression& raw);
  // What an expression reads and what it makes, as URIs or paths, for the
  // order check and the runner's fetch plan.
  std::vector<std::string> (*inputs)(const ExpressionBody& body);
  std::vector<std::string> (*outputs)(const ExpressionBody& body);
};

std::span<const ExpressionInfo> container_expressions();
const ExpressionInfo& expression_info(ExpressionKind kind);

struct ContainerFile {
  std::vector<Expression> expressions;
  std::string stripped;  // the Xen config lines, verbatim
  DomainSpec domain;     // what they set
};

// Reads a container file; `file_name` goes into every Location.
Result<ContainerFile> parse_container_file(std::string_view text, std::string_view file_name);

// The name by which two spellings of one resource compare equal:
// "file:///a/b" and "/a//b" are "/a/b"; other URIs are kept as written.
std::string resource_key(std::string_view uri);

// The reference for `kiln help container` and docs/container.md.
std::string container_reference_text();
std::string container_reference_markdown();

}  // namespace kiln
