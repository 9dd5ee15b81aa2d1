// Xen domain configs: the `key = value` files of xm and xl (/etc/xen/*.cfg),
// read into a DomainSpec and written from one.
//
// Syntax, a subset of the Python that xm executed:
//   - one `KEY = VALUE` per line, or several separated by ';' (as xl allows);
//   - VALUE is a "string" or 'string' (backslash escapes \\ \' \" \n \t \r
//     \xHH), an integer (decimal or 0x hex), or a list `[ VALUE, ... ]` that
//     may span lines, nest, and end with a trailing comma;
//   - '#' starts a comment outside strings; blank lines are ignored.
//
// Every key of xl.cfg(5) and of xm's configs is in one table
// (xen_config_keys(), which `kiln help xen` and docs/xen-config.md print):
// it is honoured, or recorded in DomainSource::unsupported with the reason
// for one warning (a display asked for, maxmem...), or refused with the
// reason (PCI passthrough, a root over NFS). A key Xen does not know is an
// error, and so is an honoured key set twice. memory and vcpus may also be
// quoted integers ('4096'), as xm converted them. cmdline is xl's whole
// command line, instead of root and extra.
//
// Disk specs: formats/domain/xen_disk_spec.h.
//
// vif specs: comma-separated KEY=VALUE with mac= (six hex octets) and
// bridge=; other keys are kept. '' is one interface with defaults.
//
// Every error is ErrorKind::kBadInput at FILE:LINE.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

enum class XenKeyTreatment { kHonoured, kWarned, kRefused };

struct XenKeyInfo {
  std::string_view key;
  XenKeyTreatment treatment;
  std::string_view doc;  // honoured: what kiln does with it; otherwise why not
};

// The table the parser reads keys by, in its order.
std::vector<XenKeyInfo> xen_config_keys();
// The table for people: plain text (`kiln help xen`) and Markdown
// (docs/xen-config.md).
std::string xen_config_reference_text();
std::string xen_config_reference_markdown();

// Reads a whole Xen domain config; `file_name` goes into every Location.
// `notes`, when given, receives the warnings for the keys kiln does not act
// on that were read, also when the config fails further on: they are worth
// saying either way.
Result<DomainSpec> parse_xen_config(std::string_view text, std::string_view file_name,
                                    std::vector<UnsupportedKey>* notes = nullptr);

// The config in the conventional layout, e.g.
//   disk = ['file:/abs/out/root.img,xvda1,w']
// It parses back to an equal spec. Fails (check_domain) on a spec that no
// config could express, such as a disk without a frontend.
Result<std::string> write_xen_config(const DomainSpec& spec);

// The line-level parser behind parse_xen_config, for formats that embed Xen
// config lines among lines of their own (the domain container syntax): feed
// it the Xen lines with their line numbers in the enclosing file, then call
// finish(). A list may span lines; lines fed while one is open continue it.
// Stop at the first error: the parser is not meant to resume after one.
class XenConfigParser {
 public:
  explicit XenConfigParser(std::string_view file_name);
  XenConfigParser(XenConfigParser&&) noexcept;
  XenConfigParser& operator=(XenConfigParser&&) noexcept;
  ~XenConfigParser();

  // `line` without its newline; line numbers must increase.
  Result<> feed_line(std::string_view line, int line_number);
  // Fails if a list is still open; otherwise the spec of every line fed.
  Result<DomainSpec> finish();
  // The warnings so far: what finish()'s spec would carry in
  // source.unsupported.
  const std::vector<UnsupportedKey>& notes() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln
