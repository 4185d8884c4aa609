package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import java.util.zip.ZipInputStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** The zips the stack deploys are Quarkus Lambda packages whose entry point is the handler the stack names. */
class FunctionPackagesTest {
    static java.util.List<String> functions() {
        return Trellis2Stack.FUNCTIONS;
    }

    @ParameterizedTest
    @MethodSource("functions")
    void zipHoldsTheHandlerTheStackNames(String name) throws IOException {
        Path zip = Synth.FUNCTIONS.resolve(name).resolve("target").resolve("function.zip");
        assertTrue(Files.isRegularFile(zip), zip + " (built by the reactor before this module)");
        String handlerClass = Trellis2Stack.QUARKUS_HANDLER.substring(0, Trellis2Stack.QUARKUS_HANDLER.indexOf("::"))
                .replace('.', '/') + ".class";
        boolean found = false;
        try (ZipFile z = new ZipFile(zip.toFile())) {
            for (ZipEntry e : java.util.Collections.list(z.entries())) {
                if (e.getName().equals(handlerClass)) {
                    found = true;
                } else if (e.getName().startsWith("lib/") && e.getName().contains("quarkus-amazon-lambda-")
                        && e.getName().endsWith(".jar")) {
                    try (InputStream in = z.getInputStream(e); ZipInputStream jar = new ZipInputStream(in)) {
                        for (ZipEntry c; (c = jar.getNextEntry()) != null; ) {
                            found |= c.getName().equals(handlerClass);
                        }
                    }
                }
            }
        }
        assertTrue(found, name + ": " + handlerClass + " is not in " + zip);
    }
}
