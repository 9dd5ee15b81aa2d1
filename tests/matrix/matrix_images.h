// The images of the CI matrix: the default recipe baked for other
// architectures and suites by ctest fixtures (tests/CMakeLists.txt) into
// the integration directory's matrix/NAME, hostname NAME; and instances of
// one test booted from them in its own state directory, destroyed at its
// end. Shared by tests/matrix/suites_test.cc (in `make test`) and
// tests/matrix/matrix_test.cc (`make test-matrix`).
#pragma once

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/integration/root_filesystem.h"
#include "tests/test_support.h"

namespace kiln::testing {

inline const std::filesystem::path kMatrix = std::filesystem::path(KILN_INTEGRATION_DIR) / "matrix";

inline nlohmann::json matrix_manifest(const std::string& image) {
  return nlohmann::json::parse(read_text(kMatrix / image / "manifest.json"));
}

inline std::string matrix_debugfs(const std::string& image, const std::string& request) {
  return run_program({"debugfs", "-R", request, root_filesystem(kMatrix / image)}).out;
}

// The image's manifest names `arch`, e2fsck finds its root clean, and its
// hostname is its name.
inline void expect_baked_for(const std::string& image, const std::string& arch) {
  SCOPED_TRACE(image);
  EXPECT_EQ(matrix_manifest(image)["image"]["architecture"], arch);
  auto fsck = run_program({"e2fsck", "-fn", root_filesystem(kMatrix / image)});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  EXPECT_EQ(matrix_debugfs(image, "cat /etc/hostname"), image + "\n");
}

class MatrixBootTest : public ::testing::Test {
 protected:
  std::vector<std::string> env() const {
    return {"KILN_RUNTIME_DIR=" + (dir_ / "run").string(), "KILN_STATE_DIR=" + (dir_ / "state").string()};
  }
  ProcessResult kiln(std::vector<std::string> args) const { return run_kiln(args, env()); }
  ProcessResult boot(const std::string& image, const std::string& name, std::vector<std::string> more = {}) {
    names_.push_back(name);
    std::vector<std::string> args = {"boot", (kMatrix / image).string(), "--name", name, "--detach", "--wait-ready=900"};
    args.insert(args.end(), more.begin(), more.end());
    return kiln(args);
  }
  std::string exec(const std::string& name, const std::string& command) {
    ProcessResult result = kiln({"exec", name, "--", "sh", "-c", command});
    EXPECT_EQ(result.exit_code, 0) << command << ": " << result.err;
    return result.out;
  }
  void TearDown() override {
    for (const std::string& name : names_) kiln({"destroy", name});
  }
  ScratchDir dir_;
  std::vector<std::string> names_;
};

}  // namespace kiln::testing
