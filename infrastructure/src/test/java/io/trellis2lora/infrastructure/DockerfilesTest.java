package io.trellis2lora.infrastructure;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The Batch images, checked without Docker (none runs here): hadolint, and every path, pin and name the Dockerfiles
 * rely on exists in the repository with the same value.
 */
class DockerfilesTest {
    static final Path CONTEXT = Synth.REPO.resolve("batch-containers");
    static final Path LOCK = CONTEXT.resolve("requirements.lock");
    private static final Pattern PIN = Pattern.compile("^([A-Za-z0-9][A-Za-z0-9._-]*)==(\\S+)$");

    /** One instruction, with continuation lines joined and comments dropped. */
    record Instruction(String keyword, String args) {
    }

    static List<Instruction> parse(Path dockerfile) throws IOException {
        List<Instruction> out = new ArrayList<>();
        StringBuilder current = new StringBuilder();
        for (String raw : Files.readAllLines(dockerfile)) {
            String line = raw.strip();
            if (line.startsWith("#") || (line.isEmpty() && current.isEmpty())) {
                continue;
            }
            boolean more = line.endsWith("\\");
            current.append(more ? line.substring(0, line.length() - 1) : line).append(' ');
            if (!more) {
                String text = current.toString().strip();
                current.setLength(0);
                if (!text.isEmpty()) {
                    int sp = text.indexOf(' ');
                    out.add(new Instruction(text.substring(0, sp).toUpperCase(Locale.ROOT),
                            text.substring(sp + 1).strip()));
                }
            }
        }
        return out;
    }

    static Map<String, String> lock() throws IOException {
        Map<String, String> out = new HashMap<>();
        for (String line : Files.readAllLines(LOCK)) {
            Matcher m = PIN.matcher(line.strip());
            if (m.matches()) {
                out.put(normalize(m.group(1)), m.group(2));
            }
        }
        return out;
    }

    /** PEP 503 name normalisation. */
    static String normalize(String name) {
        return name.toLowerCase(Locale.ROOT).replaceAll("[-_.]+", "-");
    }

    /** name -> version of every name==version the Dockerfile's RUN pip install lines name. */
    static Map<String, String> pins(List<Instruction> instructions) {
        Map<String, String> out = new LinkedHashMap<>();
        for (Instruction i : instructions) {
            if (i.keyword().equals("RUN") && i.args().contains("pip install")) {
                for (String token : i.args().split("\\s+")) {
                    Matcher m = PIN.matcher(token);
                    if (m.matches()) {
                        out.put(normalize(m.group(1)), m.group(2));
                    }
                }
            }
        }
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"Dockerfile.preprocess", "Dockerfile.train"})
    void passesHadolint(String name) throws Exception {
        Tools.Result r = Tools.run(List.of(Tools.program("hadolint").toString(), name), CONTEXT);
        assertEquals(0, r.exitCode(), "hadolint " + name + ":\n" + r.output());
        assertEquals("", r.output().strip());
    }

    @ParameterizedTest
    @ValueSource(strings = {"Dockerfile.preprocess", "Dockerfile.train"})
    void everyCopiedPathExistsInTheBuildContext(String name) throws IOException {
        int copies = 0;
        for (Instruction i : parse(CONTEXT.resolve(name))) {
            if ((i.keyword().equals("COPY") || i.keyword().equals("ADD")) && !i.args().startsWith("--from")) {
                String[] parts = i.args().split("\\s+");
                for (int k = 0; k < parts.length - 1; k++) {
                    assertTrue(Files.exists(CONTEXT.resolve(parts[k])), name + " copies " + parts[k]
                            + ", which batch-containers/ lacks");
                    copies++;
                }
            }
            assertFalse(i.keyword().equals("ADD"), "COPY, not ADD: nothing is fetched or unpacked implicitly");
        }
        assertTrue(copies >= 3, "the lock file and the worker's pyproject.toml and src/");
    }

    @ParameterizedTest
    @ValueSource(strings = {"Dockerfile.preprocess", "Dockerfile.train"})
    void pinsAreTheLockFilesAndTheLockConstrainsTheRest(String name) throws IOException {
        List<Instruction> ins = parse(CONTEXT.resolve(name));
        Map<String, String> pins = pins(ins);
        Map<String, String> lock = lock();
        assertTrue(pins.size() >= 10, name + " pins what it installs: " + pins);
        for (Map.Entry<String, String> p : pins.entrySet()) {
            assertEquals(lock.get(p.getKey()), p.getValue(), name + ": " + p.getKey() + " must be the lock's version");
        }
        boolean constrained = false;
        boolean lockCopied = false;
        for (Instruction i : ins) {
            if (i.keyword().equals("COPY") && i.args().matches("requirements\\.lock\\s+/tmp/requirements\\.lock")) {
                lockCopied = true;
            }
            if (i.keyword().equals("RUN") && i.args().contains("pip install --constraint /tmp/requirements.lock")) {
                constrained = true;
            }
        }
        assertTrue(lockCopied && constrained, name + ": dependencies are held to requirements.lock");
        for (Instruction i : ins) {
            if (i.keyword().equals("RUN") && i.args().contains("pip install") && !i.args().contains("--constraint")) {
                assertTrue(i.args().contains("--no-deps"), name + ": an unconstrained install pulls nothing: " + i);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"Dockerfile.preprocess", "Dockerfile.train"})
    void baseIsAPinnedCudaImageAndTheWorkerRunsAsItsOwnUser(String name) throws IOException {
        List<Instruction> ins = parse(CONTEXT.resolve(name));
        Set<String> bases = new TreeSet<>();
        String user = null;
        String entrypoint = null;
        for (Instruction i : ins) {
            switch (i.keyword()) {
                case "FROM" -> bases.add(i.args().split("\\s+")[0]);
                case "USER" -> user = i.args();
                case "ENTRYPOINT" -> entrypoint = i.args();
                default -> { }
            }
        }
        assertEquals(1, bases.size(), "build and run stages share one base: " + bases);
        String base = bases.iterator().next();
        assertTrue(base.matches("nvidia/cuda:\\d+\\.\\d+\\.\\d+-[a-z-]+-ubuntu\\d+\\.\\d+"), "a pinned CUDA tag: " + base);
        assertEquals(String.valueOf(Trellis2Stack.CONTAINER_UID), user,
                "the uid whose cache directory the Batch hosts prepare");
        assertTrue(ins.stream().anyMatch(i -> i.keyword().equals("RUN")
                && i.args().contains("useradd --uid " + Trellis2Stack.CONTAINER_UID)));
        assertEquals("[\"trellis2-worker\"]", entrypoint);
        assertTrue(Files.readString(CONTEXT.resolve("worker/pyproject.toml")).contains("trellis2-worker = "),
                "the worker package installs the trellis2-worker command");
    }

    /**
     * Every third-party module the worker imports is installed in the image by its distribution's pin: the imports
     * are read from the worker's sources and mapped to distributions by the project's Python environment.
     */
    @ParameterizedTest
    @ValueSource(strings = {"Dockerfile.preprocess", "Dockerfile.train"})
    void imageInstallsEveryDistributionTheWorkerImports(String name) throws Exception {
        Map<String, String> pins = pins(parse(CONTEXT.resolve(name)));
        // The Blender pass runs only in preprocessing.
        Set<String> notNeeded = name.endsWith("train") ? Set.of("bpy") : Set.of();
        JsonNode imports = workerImports();
        assertTrue(imports.has("torch"), "the import scan found the worker's imports: " + imports);
        List<String> missing = new ArrayList<>();
        imports.fields().forEachRemaining(e -> {
            boolean covered = false;
            for (JsonNode dist : e.getValue()) {
                String d = normalize(dist.asText());
                covered |= pins.containsKey(d) || notNeeded.contains(d);
            }
            if (!covered) {
                missing.add(e.getKey() + " (" + e.getValue() + ")");
            }
        });
        assertEquals(List.of(), missing, name + " lacks what the worker imports");
        if (name.endsWith("preprocess")) {
            assertTrue(pins.containsKey("bpy"));
        }
    }

    private static JsonNode workerImports() throws Exception {
        String script = String.join("\n",
                "import ast, json, pathlib, sys, importlib.metadata as md",
                "dists = md.packages_distributions()",
                "found = {}",
                "for f in pathlib.Path(sys.argv[1]).rglob('*.py'):",
                "    for node in ast.walk(ast.parse(f.read_text())):",
                "        names = []",
                "        if isinstance(node, ast.Import): names = [a.name for a in node.names]",
                "        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module: names = [node.module]",
                "        for n in names:",
                "            top = n.split('.')[0]",
                "            if top in sys.stdlib_module_names or top == 'trellis2_worker': continue",
                // Modules the environment lacks (optional accelerators such as flash_attn) are not required.
                "            if top in dists: found[top] = sorted(set(dists[top]))",
                "print(json.dumps(found))");
        Path py = Files.createTempFile("imports", ".py");
        Files.writeString(py, script);
        try {
            Tools.Result r = Tools.run(List.of(Tools.program("python").toString(), py.toString(),
                    CONTEXT.resolve("worker/src").toString()), CONTEXT);
            assertEquals(0, r.exitCode(), r.output());
            String out = r.output().strip();
            return Synth.MAPPER.readTree(out.substring(out.lastIndexOf('\n') + 1));
        } finally {
            Files.deleteIfExists(py);
        }
    }

    @Test
    void dockerignoreKeepsTestsAndCachesOutOfTheImages() throws IOException {
        List<String> lines = Files.readAllLines(CONTEXT.resolve(".dockerignore"));
        assertTrue(lines.contains("worker/tests"));
        assertTrue(lines.contains("**/__pycache__"));
    }
}
