//! Which node runs which layer, and the links where hidden states cross between nodes.

use serde::{Deserialize, Serialize};

use crate::config::PlanSection;

/// Where a link sits: after the embedding or after a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "layer")]
pub enum LinkPoint {
    Embed,
    Layer(usize),
}

/// A node boundary that a hidden state crosses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// As the prototype's records name it: `layer:7:node0->node1`.
    pub name: String,
    pub after: LinkPoint,
    pub from: usize,
    pub to: usize,
}

impl Link {
    /// How many layers a hidden state has been through when it crosses this link.
    pub fn depth(&self) -> usize {
        match self.after {
            LinkPoint::Embed => 0,
            LinkPoint::Layer(i) => i + 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub nodes: usize,
    pub layer_to_node: Vec<usize>,
    pub embed_node: usize,
    pub head_node: usize,
    pub links: Vec<Link>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PlanError(pub String);

impl Plan {
    /// The plan `[plan]` asks for on a model of `layers` layers (default: the prototype's
    /// split over 4 nodes).
    pub fn from_section(p: &PlanSection, layers: usize) -> Result<Plan, PlanError> {
        if let Some(assign) = &p.layer_to_node {
            if assign.len() != layers {
                return Err(PlanError(format!(
                    "plan.layer_to_node has {} entries; the model has {layers} layers",
                    assign.len()
                )));
            }
            let embed = p.embed_node.unwrap_or(assign[0]);
            let head = p.head_node.unwrap_or(embed);
            let used: Vec<usize> = assign.iter().copied().chain([embed, head]).collect();
            let highest = used.iter().copied().max().unwrap_or(0);
            let unused: Vec<String> = (0..highest)
                .filter(|n| !used.contains(n))
                .map(|n| n.to_string())
                .collect();
            if !unused.is_empty() {
                return Err(PlanError(format!(
                    "plan.layer_to_node, embed_node and head_node use node {highest} but no layer \
                     or end of the model is on node {}; number the nodes 0, 1, 2, ... without gaps",
                    unused.join(", ")
                )));
            }
            Plan::from_assignment(assign.clone(), embed, head)
        } else if let Some(cuts) = &p.split_after {
            Plan::split_after(layers, cuts)
        } else {
            Plan::default_split(layers, p.nodes.unwrap_or(4))
        }
    }

    /// The prototype's split for `nodes` nodes: node 0 holds the first (base/2) and last
    /// (base − base/2) layers with embedding and head, base = layers div nodes; nodes 1.. get
    /// the middle layers in order, base each plus one for the first (layers mod nodes).
    pub fn default_split(layers: usize, nodes: usize) -> Result<Plan, PlanError> {
        if nodes == 0 {
            return Err(PlanError("plan.nodes must be at least 1".into()));
        }
        if nodes > layers {
            return Err(PlanError(format!(
                "plan.nodes = {nodes} is more nodes than the model has layers ({layers}); use at most {layers}"
            )));
        }
        let base = layers / nodes;
        let rem = layers % nodes;
        let early = base / 2;
        let late = base - early;
        let mut layer_to_node = vec![0; early];
        for node in 1..nodes {
            let count = base + usize::from(node - 1 < rem);
            layer_to_node.extend(std::iter::repeat_n(node, count));
        }
        layer_to_node.extend(std::iter::repeat_n(0, late));
        Plan::from_assignment(layer_to_node, 0, 0)
    }

    /// A pure pipeline cut after the given layers: embedding on the first node, head on the last.
    pub fn split_after(layers: usize, cuts: &[usize]) -> Result<Plan, PlanError> {
        let mut sorted = cuts.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if let Some(&bad) = sorted.iter().find(|&&c| c + 1 >= layers) {
            return Err(PlanError(format!(
                "plan.split_after contains {bad}, outside 0..={} for a model of {layers} layers",
                layers.saturating_sub(2)
            )));
        }
        let layer_to_node: Vec<usize> = (0..layers)
            .map(|l| sorted.iter().filter(|&&c| c < l).count())
            .collect();
        let head = sorted.len();
        Plan::from_assignment(layer_to_node, 0, head)
    }

    pub fn from_assignment(
        layer_to_node: Vec<usize>,
        embed_node: usize,
        head_node: usize,
    ) -> Result<Plan, PlanError> {
        let layers = layer_to_node.len();
        if layers == 0 {
            return Err(PlanError("the model has no layers".into()));
        }
        let nodes = layer_to_node
            .iter()
            .copied()
            .chain([embed_node, head_node])
            .max()
            .unwrap_or(0)
            + 1;
        let name = |after: LinkPoint, from: usize, to: usize| match after {
            LinkPoint::Embed => format!("embed:node{from}->node{to}"),
            LinkPoint::Layer(i) => format!("layer:{i}:node{from}->node{to}"),
        };
        let mut links = Vec::new();
        let mut push = |after, from, to| {
            if from != to {
                links.push(Link {
                    name: name(after, from, to),
                    after,
                    from,
                    to,
                });
            }
        };
        push(LinkPoint::Embed, embed_node, layer_to_node[0]);
        for i in 0..layers - 1 {
            push(LinkPoint::Layer(i), layer_to_node[i], layer_to_node[i + 1]);
        }
        push(
            LinkPoint::Layer(layers - 1),
            layer_to_node[layers - 1],
            head_node,
        );
        Ok(Plan {
            nodes,
            layer_to_node,
            embed_node,
            head_node,
            links,
        })
    }

    /// Whether `key` names one of the links: in full (`layer:7:node0->node1`) or by where it
    /// sits (`layer:7`, `embed`), as per-link codec overrides do.
    pub fn has_link(&self, key: &str) -> bool {
        self.links.iter().any(|l| {
            l.name == key
                || l.name
                    .rsplit_once(':')
                    .is_some_and(|(point, _)| point == key)
        })
    }

    /// The link names, comma-separated, for messages.
    pub fn link_names(&self) -> String {
        self.links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// For each layer, the index in `links` of the link after it, if any.
    pub fn link_after_layer(&self) -> Vec<Option<usize>> {
        let mut out = vec![None; self.layer_to_node.len()];
        for (k, link) in self.links.iter().enumerate() {
            if let LinkPoint::Layer(i) = link.after {
                out[i] = Some(k);
            }
        }
        out
    }

    /// Per link: whether the node that sends it is on a GPU.
    pub fn gpu_links(&self, decoder: &crate::model::Decoder) -> Vec<bool> {
        self.links
            .iter()
            .map(|l| decoder.depth_device(l.depth()).is_cuda())
            .collect()
    }

    pub fn link_after_embed(&self) -> Option<usize> {
        self.links.iter().position(|l| l.after == LinkPoint::Embed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_layers(plan: &Plan) -> Vec<usize> {
        plan.links
            .iter()
            .filter_map(|l| match l.after {
                LinkPoint::Layer(i) => Some(i),
                LinkPoint::Embed => None,
            })
            .collect()
    }

    #[test]
    fn sixty_four_layers() {
        let p = Plan::default_split(64, 4).unwrap();
        assert_eq!(cut_layers(&p), [7, 23, 39, 55]);
        assert_eq!(p.links[0].name, "layer:7:node0->node1");
        assert_eq!(p.links[3].name, "layer:55:node3->node0");
    }

    #[test]
    fn thirty_six_layers() {
        // base 9, early 4: node0 0-3, nodes 1-3 nine each (4-12, 13-21, 22-30), node0 31-35.
        let p = Plan::default_split(36, 4).unwrap();
        assert_eq!(cut_layers(&p), [3, 12, 21, 30]);
    }

    #[test]
    fn thirty_layers() {
        // base 7, rem 2, early 3: node0 0-2, node1 8 (3-10), node2 8 (11-18), node3 7
        // (19-25), node0 26-29.
        let p = Plan::default_split(30, 4).unwrap();
        assert_eq!(cut_layers(&p), [2, 10, 18, 25]);
        assert_eq!(p.layer_to_node.iter().filter(|&&n| n == 0).count(), 7);
    }

    #[test]
    fn twenty_eight_layers() {
        // base 7, early 3: node0 0-2, nodes 1-3 seven each (3-9, 10-16, 17-23), node0 24-27.
        let p = Plan::default_split(28, 4).unwrap();
        assert_eq!(cut_layers(&p), [2, 9, 16, 23]);
    }

    #[test]
    fn split_after_is_a_pipeline() {
        let p = Plan::split_after(30, &[7, 15, 23]).unwrap();
        assert_eq!(cut_layers(&p), [7, 15, 23]);
        assert_eq!(p.head_node, 3);
        assert!(Plan::split_after(30, &[29]).is_err());
    }

    #[test]
    fn embed_and_head_links() {
        let p = Plan::from_assignment(vec![1, 1, 2], 0, 0).unwrap();
        let names: Vec<&str> = p.links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "embed:node0->node1",
                "layer:1:node1->node2",
                "layer:2:node2->node0"
            ]
        );
        assert_eq!(p.link_after_embed(), Some(0));
        assert_eq!(p.link_after_layer(), [None, Some(1), Some(2)]);
    }

    #[test]
    fn too_many_nodes() {
        assert!(Plan::default_split(3, 4)
            .unwrap_err()
            .0
            .contains("more nodes than"));
    }

    /// scripts/peer_hf.py recomputes this split in Python, and the peer comparison means
    /// something only where both compress the same hidden states; it once left out the link
    /// after the embedding (fewer than two layers per node). Runs the script's function with
    /// stand-ins for torch, transformers and tokenizers, which CI does not install.
    #[test]
    fn the_peer_script_splits_as_default_split() {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/peer_hf.py");
        let program = r#"
import importlib.util, json, sys, types
for name in ("torch", "transformers", "tokenizers"):
    sys.modules[name] = types.ModuleType(name)
sys.modules["tokenizers"].Tokenizer = None
spec = importlib.util.spec_from_file_location("peer_hf", sys.argv[1])
peer = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peer)
print(json.dumps({f"{l},{n}": peer.prototype_links(l, n)
                  for l in range(1, 41) for n in range(1, min(l, 8) + 1)}))
"#;
        let output = match std::process::Command::new("python3")
            .args(["-c", program, script])
            .output()
        {
            Ok(output) => output,
            Err(e) => {
                splitbench_plugin_api::testkit::missing_input(
                    "links against the prototype's",
                    format!("python3 cannot run here ({e})"),
                );
                return;
            }
        };
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let peer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for layers in 1..=40 {
            for nodes in 1..=layers.min(8) {
                let points: Vec<serde_json::Value> = Plan::default_split(layers, nodes)
                    .unwrap()
                    .links
                    .iter()
                    .map(|l| match l.after {
                        LinkPoint::Embed => "embed".into(),
                        LinkPoint::Layer(i) => i.into(),
                    })
                    .collect();
                assert_eq!(
                    peer[format!("{layers},{nodes}")],
                    serde_json::Value::Array(points),
                    "{layers} layers, {nodes} nodes"
                );
            }
        }
    }

    #[test]
    fn nodes_are_numbered_without_gaps() {
        let section = |assign: Vec<usize>, embed: Option<usize>| PlanSection {
            layer_to_node: Some(assign),
            embed_node: embed,
            ..PlanSection::default()
        };
        let err = Plan::from_section(&section(vec![0, 2, 2, 0], None), 4).unwrap_err();
        assert!(err.0.contains("node 1;"), "{err}");
        let err = Plan::from_section(&section(vec![0, 1, 1, 0], Some(3)), 4).unwrap_err();
        assert!(err.0.contains("node 2;"), "{err}");
        // A node that holds only the embedding is a node like any other.
        let plan = Plan::from_section(&section(vec![0, 1, 1, 0], Some(2)), 4).unwrap();
        assert_eq!(plan.links[0].name, "embed:node2->node0");
    }

    #[test]
    fn links_are_found_by_full_name_or_position() {
        let plan = Plan::default_split(8, 4).unwrap();
        let first = plan.links[0].name.clone();
        let position = first.rsplit_once(':').unwrap().0.to_string();
        assert!(plan.has_link(&first) && plan.has_link(&position));
        assert!(!plan.has_link("layer:7") && !plan.has_link("embed"));
    }
}
