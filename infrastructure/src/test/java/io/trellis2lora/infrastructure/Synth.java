package io.trellis2lora.infrastructure;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import software.amazon.awscdk.App;
import software.amazon.awscdk.AppProps;
import software.amazon.awscdk.StackProps;
import software.amazon.awscdk.assertions.Template;

/**
 * The stack synthesised once per test JVM, in-process and offline, with step-functions/'s ASL file. The Lambda
 * packages are taken from an artifact bucket (the stack's other source besides the build's function.zip files, which
 * test builds do not package): nothing the assertions look at depends on where the code lies.
 */
final class Synth {
    static final ObjectMapper MAPPER = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    static final Path REPO = repositoryRoot();
    static final String ARTIFACT_BUCKET = "trellis2-lora-artifacts";
    static final Path ASL = REPO.resolve("step-functions").resolve("trellis2-lora.asl.json");
    static final Path TARGET = Path.of("target").toAbsolutePath();

    private static Template template;

    /** The checkout this module lives in: the nearest directory above that holds step-functions/. */
    private static Path repositoryRoot() {
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("step-functions")) && Files.isDirectory(p.resolve("batch-containers"))) {
                return p;
            }
        }
        throw new IllegalStateException("run from inside the repository");
    }
    private static JsonNode json;

    private Synth() {
    }

    static synchronized Template template() {
        if (template == null) {
            App app = new App(AppProps.builder().outdir(TARGET.resolve("cdk.out").toString()).build());
            Trellis2Stack stack = new Trellis2Stack(app, "Trellis2Lora", StackProps.builder().build(),
                    new Trellis2Stack.Sources(Trellis2Stack.FunctionCode.fromBucket(ARTIFACT_BUCKET, "release/"),
                            ASL));
            template = Template.fromStack(stack);
            json = MAPPER.valueToTree(template.toJSON());
        }
        return template;
    }

    static JsonNode json() {
        template();
        return json;
    }

    /** Writes the template where cfn-lint (and a curious reader) can find it. */
    static Path writeTemplate() throws IOException {
        Path out = TARGET.resolve("cdk").resolve("Trellis2Lora.template.json");
        Files.createDirectories(out.getParent());
        MAPPER.writeValue(out.toFile(), json());
        return out;
    }

    /** Logical id -> resource, for every resource of a type. */
    static Map<String, JsonNode> resources(String type) {
        Map<String, JsonNode> out = new LinkedHashMap<>();
        Iterator<Map.Entry<String, JsonNode>> it = json().path("Resources").fields();
        while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            if (type.equals(e.getValue().path("Type").asText())) {
                out.put(e.getKey(), e.getValue());
            }
        }
        return out;
    }

    /** The one resource of a type whose logical id starts with a construct id. */
    static Map.Entry<String, JsonNode> resource(String type, String idPrefix) {
        List<Map.Entry<String, JsonNode>> hits = new ArrayList<>();
        for (Map.Entry<String, JsonNode> e : resources(type).entrySet()) {
            if (e.getKey().startsWith(idPrefix)) {
                hits.add(e);
            }
        }
        if (hits.size() != 1) {
            throw new AssertionError("expected one " + type + " named " + idPrefix + "*, found "
                    + hits.stream().map(Map.Entry::getKey).toList());
        }
        return hits.get(0);
    }

    static String logicalId(String type, String idPrefix) {
        return resource(type, idPrefix).getKey();
    }

    static JsonNode props(String type, String idPrefix) {
        return resource(type, idPrefix).getValue().path("Properties");
    }

    /** True when a node is {Ref: id} or {Fn::GetAtt: [id, ...]}. */
    static boolean refersTo(JsonNode node, String logicalId) {
        if (node.has("Ref")) {
            return logicalId.equals(node.get("Ref").asText());
        }
        if (node.has("Fn::GetAtt")) {
            return logicalId.equals(node.get("Fn::GetAtt").get(0).asText());
        }
        return false;
    }

    /** True when a node or anything inside it refers to a logical id. */
    static boolean mentions(JsonNode node, String logicalId) {
        if (refersTo(node, logicalId)) {
            return true;
        }
        for (JsonNode child : node) {
            if (mentions(child, logicalId)) {
                return true;
            }
        }
        return false;
    }
}
