package io.trellis2lora.local.asl;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.Iterator;
import java.util.Map;

/** Payload templates (Parameters, ItemSelector, ResultSelector): fields ending in ".$" take a path or an intrinsic. */
final class Template {
    private Template() {
    }

    static JsonNode apply(JsonNode template, JsonNode input, JsonNode context) throws AslError {
        if (template.isObject()) {
            ObjectNode out = JsonNodeFactory.instance.objectNode();
            Iterator<Map.Entry<String, JsonNode>> fields = template.fields();
            while (fields.hasNext()) {
                Map.Entry<String, JsonNode> field = fields.next();
                String key = field.getKey();
                if (key.endsWith(".$")) {
                    out.set(key.substring(0, key.length() - 2), dynamic(field.getValue().asText(), input, context));
                } else {
                    out.set(key, apply(field.getValue(), input, context));
                }
            }
            return out;
        }
        if (template.isArray()) {
            ArrayNode out = JsonNodeFactory.instance.arrayNode();
            for (JsonNode item : template) {
                out.add(apply(item, input, context));
            }
            return out;
        }
        return template;
    }

    static JsonNode dynamic(String expression, JsonNode input, JsonNode context) throws AslError {
        if (expression.startsWith("$$")) {
            return JsonPath.read(context, expression.substring(1));
        }
        if (expression.startsWith("$")) {
            return JsonPath.read(input, expression);
        }
        if (Intrinsics.isCall(expression)) {
            return Intrinsics.evaluate(expression, input, context);
        }
        throw AslError.runtime("'" + expression + "' is neither a path nor an intrinsic function");
    }

    /** Load-time check of every dynamic value inside a template. */
    static void check(JsonNode template, String where) {
        if (template.isObject()) {
            template.fields().forEachRemaining(field -> {
                if (field.getKey().endsWith(".$")) {
                    String expression = field.getValue().asText();
                    try {
                        if (expression.startsWith("$$")) {
                            JsonPath.parse(expression.substring(1));
                        } else if (expression.startsWith("$")) {
                            JsonPath.parse(expression);
                        } else if (Intrinsics.isCall(expression)) {
                            Intrinsics.check(expression);
                        } else {
                            throw new IllegalArgumentException("neither a path nor an intrinsic function");
                        }
                    } catch (IllegalArgumentException e) {
                        throw new IllegalArgumentException(where + ": field '" + field.getKey() + "': " + e.getMessage());
                    }
                } else {
                    check(field.getValue(), where);
                }
            });
        } else if (template.isArray()) {
            template.forEach(item -> check(item, where));
        }
    }
}
