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
// Keys kiln acts on: name, memory (MiB), vcpus, kernel, ramdisk, root,
// extra, cmdline (xl's whole command line, instead of root and extra), disk,
// vif, on_poweroff, on_reboot, on_crash. memory and vcpus may also be quoted
// integers ('4096'), as xm converted them. Any other key Xen knows (builder,
// bootloader, maxmem, vfb, pci...) is recorded in DomainSource::unsupported
// for one warning each; a key Xen does not know is an error, and so is a
// supported key set twice.
//
// Disk specs, one string per disk:
//   - the xm form "BACKEND:PATH,FRONTEND,MODE" with BACKEND file:, tap:aio:
//     or phy: ("phy:vg0/feisty" is /dev/vg0/feisty), FRONTEND sdX, hdX or
//     xvdX with an optional partition number, MODE r, w or rw;
//   - the xl keyword form "vdev=xvda, access=rw, format=qcow2, target=PATH"
//     with optional backendtype=phy|tap|qdisk and format=raw|qcow2; target
//     comes last and may contain commas.
// FRONTEND and MODE are required: "phy:vg0/feisty" alone is an error. xm
// rejected it too, and guessing a device would silently break a root= that
// names another one, so the error shows the full form instead.
//
// vif specs: comma-separated KEY=VALUE with mac= (six hex octets) and
// bridge=; other keys are kept. '' is one interface with defaults.
//
// Every error is ErrorKind::kBadInput at FILE:LINE.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "base/error.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

// Reads a whole Xen domain config; `file_name` goes into every Location.
Result<DomainSpec> parse_xen_config(std::string_view text, std::string_view file_name);

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

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace kiln
