package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awscdk.App;
import software.amazon.awscdk.StackProps;

/** The stack deploys every Lambda module there is, through the handler Quarkus actually provides. */
class FunctionPackagesTest {

    @Test
    void handlerTheStackNamesIsQuarkusLambdasEntryPoint() {
        String cls = Trellis2Stack.QUARKUS_HANDLER.substring(0, Trellis2Stack.QUARKUS_HANDLER.indexOf("::"));
        // The quarkus-amazon-lambda jar of the version the functions are built with (the parent's BOM).
        assertNotNull(getClass().getClassLoader().getResource(cls.replace('.', '/') + ".class"),
                cls + " is not in quarkus-amazon-lambda");
        assertTrue(Trellis2Stack.QUARKUS_HANDLER.endsWith("::handleRequest"));
    }

    @Test
    void everyLambdaModuleIsDeployedAndEveryDeployedFunctionIsAModule() throws IOException {
        TreeSet<String> modules = new TreeSet<>();
        try (Stream<Path> dirs = Files.list(Synth.REPO.resolve("functions"))) {
            for (Path d : dirs.toList()) {
                Path pom = d.resolve("pom.xml");
                // A Lambda module inherits the build that packages function.zip.
                if (Files.isRegularFile(pom) && Files.readString(pom).contains(
                        "<artifactId>trellis2-lora-lambda-parent</artifactId>") && !d.endsWith("lambda-parent")) {
                    modules.add(d.getFileName().toString());
                }
            }
        }
        assertEquals(new TreeSet<>(Trellis2Stack.FUNCTIONS), modules);
        String parent = Files.readString(Synth.REPO.resolve("pom.xml"));
        for (String name : Trellis2Stack.FUNCTIONS) {
            assertTrue(parent.contains("<module>functions/" + name + "</module>"), name + " is built by the reactor");
        }
    }

    @Test
    void deployingFromTheBuildOutputNeedsTheBuiltPackages(@TempDir Path empty) {
        Trellis2Stack.Sources sources = new Trellis2Stack.Sources(
                Trellis2Stack.FunctionCode.fromBuildOutput(empty), Synth.ASL);
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> new Trellis2Stack(new App(), "Trellis2Lora", StackProps.builder().build(), sources));
        assertTrue(e.getMessage().contains("function.zip is missing") && e.getMessage().contains("-DskipTests install"),
                e.getMessage());
    }
}
