package io.trellis2lora.infrastructure;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs the linters that live in the project's Python environment (bin/test passes -Dtrellis2.venv). */
final class Tools {
    record Result(int exitCode, String output) {
    }

    private Tools() {
    }

    static Path venv() {
        return Path.of(System.getProperty("trellis2.venv",
                System.getProperty("user.home") + "/.cache/trellis2-lora/venv-py311"));
    }

    /** A program from the environment's bin/; a missing one fails the test with what to do. */
    static Path program(String name) {
        Path p = venv().resolve("bin").resolve(name);
        if (!Files.isExecutable(p)) {
            throw new AssertionError(p + " is missing: run bin/setup (it installs batch-containers/requirements.lock)");
        }
        return p;
    }

    static Result run(List<String> command, Path dir) throws IOException, InterruptedException {
        Path log = Files.createTempFile("trellis2-tool", ".log");
        try {
            Process p = new ProcessBuilder(new ArrayList<>(command)).directory(dir.toFile())
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            if (!p.waitFor(5, TimeUnit.MINUTES)) {
                p.destroyForcibly();
                throw new AssertionError(command + " did not finish in 5 minutes");
            }
            return new Result(p.exitValue(), Files.readString(log, StandardCharsets.UTF_8));
        } finally {
            Files.deleteIfExists(log);
        }
    }
}
