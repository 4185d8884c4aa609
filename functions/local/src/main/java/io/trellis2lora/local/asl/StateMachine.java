package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.DeserializationFeature;
import java.io.IOException;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A parsed States Language definition, with its {@code ${Name}} placeholders substituted the way CloudFormation's
 * DefinitionSubstitutions does. Loading refuses any state type, field, path syntax, choice operator or intrinsic that
 * {@link Execution} does not implement, so the local runner can never silently skip part of the cloud's flow.
 */
public final class StateMachine {
    static final ObjectMapper MAPPER = new ObjectMapper().enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);
    private static final Pattern PLACEHOLDER = Pattern.compile("\\$\\{([A-Za-z0-9_]+)}");
    private static final Set<String> COMMON = Set.of("Type", "Comment");
    private static final Map<String, Set<String>> FIELDS = Map.of(
            "Pass", Set.of("InputPath", "OutputPath", "Parameters", "Result", "ResultPath", "Next", "End"),
            "Task", Set.of("InputPath", "OutputPath", "Parameters", "ResultSelector", "ResultPath", "Resource", "Retry",
                    "Catch", "TimeoutSeconds", "HeartbeatSeconds", "Next", "End"),
            "Choice", Set.of("InputPath", "OutputPath", "Choices", "Default"),
            "Map", Set.of("InputPath", "OutputPath", "ItemsPath", "ItemSelector", "Parameters", "MaxConcurrency",
                    "MaxConcurrencyPath", "ItemProcessor", "Iterator", "ResultSelector", "ResultPath", "Retry", "Catch",
                    "Next", "End"),
            "Succeed", Set.of("InputPath", "OutputPath"),
            "Fail", Set.of("Error", "Cause", "ErrorPath", "CausePath"));
    private static final Set<String> PATH_FIELDS = Set.of("InputPath", "OutputPath", "ResultPath", "ItemsPath",
            "MaxConcurrencyPath", "ErrorPath", "CausePath");

    private final JsonNode root;

    private StateMachine(JsonNode root) {
        this.root = root;
    }

    public JsonNode root() {
        return root;
    }

    /** Every {@code ${Name}} placeholder in a definition's text. */
    public static Set<String> placeholders(String definition) {
        Set<String> names = new HashSet<>();
        Matcher m = PLACEHOLDER.matcher(definition);
        while (m.find()) {
            names.add(m.group(1));
        }
        return names;
    }

    public static StateMachine load(String definition, Map<String, String> substitutions) {
        Set<String> missing = new HashSet<>(placeholders(definition));
        missing.removeAll(substitutions.keySet());
        if (!missing.isEmpty()) {
            throw new IllegalArgumentException("no value for the placeholders " + missing);
        }
        Matcher m = PLACEHOLDER.matcher(definition);
        StringBuilder sb = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(sb, Matcher.quoteReplacement(substitutions.get(m.group(1))));
        }
        m.appendTail(sb);
        JsonNode root;
        try {
            root = MAPPER.readTree(sb.toString());
        } catch (IOException e) {
            throw new IllegalArgumentException("the definition is not JSON: " + e.getMessage(), e);
        }
        checkStates(root, "definition");
        for (Iterator<String> it = root.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            if (!Set.of("Comment", "StartAt", "States", "TimeoutSeconds", "Version").contains(field)) {
                throw new IllegalArgumentException("top-level field '" + field + "' is not implemented by the local runner");
            }
        }
        return new StateMachine(root);
    }

    private static void checkStates(JsonNode machine, String where) {
        JsonNode states = machine.get("States");
        if (states == null || !states.isObject() || states.isEmpty()) {
            throw new IllegalArgumentException(where + ": States is missing or empty");
        }
        String startAt = machine.path("StartAt").asText(null);
        if (startAt == null || !states.has(startAt)) {
            throw new IllegalArgumentException(where + ": StartAt '" + startAt + "' is not a state");
        }
        states.fields().forEachRemaining(entry -> checkState(entry.getKey(), entry.getValue(), states, where));
    }

    private static void checkState(String name, JsonNode state, JsonNode siblings, String where) {
        String at = where + "/" + name;
        String type = state.path("Type").asText();
        Set<String> allowed = FIELDS.get(type);
        if (allowed == null) {
            throw new IllegalArgumentException(at + ": state type '" + type + "' is not implemented by the local runner");
        }
        for (Iterator<String> it = state.fieldNames(); it.hasNext(); ) {
            String field = it.next();
            if (!allowed.contains(field) && !COMMON.contains(field)) {
                throw new IllegalArgumentException(at + ": field '" + field + "' is not implemented by the local runner");
            }
            if (PATH_FIELDS.contains(field) && !state.get(field).isNull()) {
                try {
                    JsonPath.parse(state.get(field).asText());
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException(at + ": " + field + ": " + e.getMessage());
                }
            }
        }
        for (String template : new String[] {"Parameters", "ItemSelector", "ResultSelector"}) {
            if (state.has(template)) {
                Template.check(state.get(template), at + "/" + template);
            }
        }
        boolean terminal = type.equals("Succeed") || type.equals("Fail") || type.equals("Choice");
        if (!terminal && state.has("Next") == state.path("End").asBoolean(false)) {
            throw new IllegalArgumentException(at + ": needs exactly one of Next and End");
        }
        checkTarget(state.get("Next"), siblings, at);
        checkTarget(state.get("Default"), siblings, at);
        for (JsonNode catcher : state.path("Catch")) {
            checkTarget(catcher.get("Next"), siblings, at);
            if (catcher.has("ResultPath") && !catcher.get("ResultPath").isNull()) {
                JsonPath.parse(catcher.get("ResultPath").asText());
            }
        }
        if (type.equals("Choice")) {
            for (JsonNode rule : state.path("Choices")) {
                Choices.check(rule, true, at);
                checkTarget(rule.get("Next"), siblings, at);
            }
        }
        if (type.equals("Map")) {
            JsonNode processor = state.has("ItemProcessor") ? state.get("ItemProcessor") : state.get("Iterator");
            if (processor == null) {
                throw new IllegalArgumentException(at + ": a Map needs an ItemProcessor");
            }
            String mode = processor.path("ProcessorConfig").path("Mode").asText("INLINE");
            if (!mode.equals("INLINE")) {
                throw new IllegalArgumentException(at + ": only INLINE Map processing is implemented by the local runner");
            }
            checkStates(processor, at);
        }
    }

    private static void checkTarget(JsonNode next, JsonNode siblings, String at) {
        if (next != null && !siblings.has(next.asText())) {
            throw new IllegalArgumentException(at + ": target '" + next.asText() + "' is not a state here");
        }
    }
}
