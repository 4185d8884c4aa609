package io.trellis2lora.core.testing;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** Where the repository, ../shared (the read-only reference assets) and the Python environment are. */
public final class TestPaths {
    private TestPaths() {
    }

    public static Path repo() {
        String p = System.getProperty("trellis2.repo");
        Path start = p == null || p.isBlank() ? Path.of("").toAbsolutePath() : Path.of(p).toAbsolutePath();
        for (Path d = start; d != null; d = d.getParent()) {
            if (Files.isDirectory(d.resolve("functions")) && Files.isRegularFile(d.resolve("pom.xml"))
                    && Files.isDirectory(d.resolve("bin"))) {
                return d;
            }
        }
        throw new IllegalStateException("cannot find the repository root above " + start);
    }

    /** ../shared beside the checkout; a clear failure when it is missing. */
    public static Path shared() {
        Path s = repo().getParent().resolve("shared");
        if (!Files.isDirectory(s.resolve("assets/real"))) {
            throw new IllegalStateException("../shared is missing: expected it at " + s);
        }
        return s;
    }

    public static Path realAssets() {
        return shared().resolve("assets/real");
    }

    /** The worker's Python environment: -Dtrellis2.venv (bin/test sets it), $TRELLIS2_VENV, else bin/venv-path. */
    public static Path venv() throws IOException, InterruptedException {
        String v = System.getProperty("trellis2.venv");
        if (v == null || v.isBlank()) {
            v = System.getenv("TRELLIS2_VENV");
        }
        if (v == null || v.isBlank()) {
            Process p = new ProcessBuilder(repo().resolve("bin/venv-path").toString()).start();
            v = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            p.waitFor();
        }
        return Path.of(v);
    }
}
