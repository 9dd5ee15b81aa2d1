// ContainerRunner: `kiln container`, the vm-container tool. It runs a
// domain container file (container/vm_container.h) in one pass: the
// expressions prepare filesystem images and archives from canned parts,
// then the stripped Xen config is written for `kiln boot`.
//
// A run has two phases, so that nothing is changed on the strength of an
// input that turns out to be missing or untrusted:
//   1. gather: every resource the file reads and does not make itself
//      (archives, patches, copy sources, patch targets) is located or
//      fetched once into the run's working directory, and its detached
//      signature (URI.asc) is checked, as is the container file's own;
//   2. run: the expressions, in order. Archives that [replace] and [copy]
//      edit are expanded once into a working copy that later expressions
//      on the same URI share (a [populate image] of that URI gets the
//      edited content, a [patch] edits it further); what [create], forks
//      and patch options make is used locally by later expressions.
// The signature policy (--require-signatures, --keyring) is documented with
// the syntax, in docs/container.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/reporter.h"
#include "formats/domain/domain_spec.h"

namespace kiln {

struct ContainerOptions {
  std::filesystem::path container_file;
  std::filesystem::path stripped;  // where the Xen config goes; empty: not written
  std::filesystem::path log;       // empty: no log
  std::filesystem::path work_dir;  // --dir; empty: $TMPDIR, else /var/tmp
  std::filesystem::path keyring;   // empty: signatures are not checked
  bool require_signatures = false;
  int64_t mtime = 0;  // for the files the run writes; 0: now
};

struct ContainerStep {
  std::string expression;  // "[populate image] at fido.domain:12:1"
  std::string summary;     // what it did
  double seconds = 0;
};

struct ContainerResult {
  std::vector<ContainerStep> steps;
  std::vector<std::string> verified;  // "URI: good signature by ..."
  size_t fetched = 0;                 // resources fetched by URI
  DomainSpec domain;
  double seconds = 0;
};

Result<ContainerResult> run_container(const ContainerOptions& options, Reporter& reporter);

}  // namespace kiln
