// FakeCommandRunner: the CommandRunner tests give to code that runs
// programs. It records every Command it is asked to run and answers with
// `on_run` (success with no output by default), so that what kiln would run,
// and what it makes of the answer, is checked as data.
#pragma once

#include <functional>
#include <vector>

#include "base/subprocess.h"

namespace kiln::testing {

class FakeCommandRunner : public CommandRunner {
 public:
  std::vector<Command> commands;
  std::function<Result<Completed>(const Command&)> on_run;

  Result<Completed> run(const Command& command) override {
    commands.push_back(command);
    if (on_run) return on_run(command);
    return Completed{};
  }
};

}  // namespace kiln::testing
