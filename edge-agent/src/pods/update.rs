//! What a new assignment of a pod already on the node changes, as pure functions.
//!
//! A uid names one pod for its whole life, and of its containers only the image may
//! change (the server refuses other changes, as Kubernetes does). The kubelet restarts a
//! running container whose spec changed and leaves its other containers alone;
//! [`restarted_containers`] decides which ones that is.

use wasmfleet_protocol::pod::ContainerSpec;

/// The containers of `running` (by index) that `assigned` gives another image or module,
/// with their new spec. Containers are matched by name; one that `assigned` does not list
/// keeps what it runs.
pub fn restarted_containers<'a>(
    running: &[ContainerSpec],
    assigned: &'a [ContainerSpec],
) -> Vec<(usize, &'a ContainerSpec)> {
    running
        .iter()
        .enumerate()
        .filter_map(|(index, now)| {
            let new = assigned.iter().find(|c| c.name == now.name)?;
            let changed = new.image != now.image || new.module.digest != now.module.digest;
            changed.then_some((index, new))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmfleet_protocol::pod::ModuleRef;

    fn container(name: &str, image: &str, digest: char) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            module: ModuleRef {
                digest: digest.to_string().repeat(64),
                size: 1,
            },
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            probes: Default::default(),
        }
    }

    fn names(restarted: &[(usize, &ContainerSpec)]) -> Vec<(usize, String)> {
        restarted
            .iter()
            .map(|(i, c)| (*i, format!("{}={}", c.name, c.image)))
            .collect()
    }

    #[test]
    fn only_the_container_with_a_new_image_restarts() {
        let running = [container("c1", "a:v1", 'a'), container("c2", "b:v1", 'b')];
        let assigned = [container("c1", "a:v1", 'a'), container("c2", "b:v2", 'c')];
        assert_eq!(
            names(&restarted_containers(&running, &assigned)),
            [(1, "c2=b:v2".to_string())]
        );
    }

    #[test]
    fn the_same_images_restart_nothing() {
        let running = [container("c1", "a:v1", 'a'), container("c2", "b:v1", 'b')];
        assert!(restarted_containers(&running, &running.clone()).is_empty());
    }

    #[test]
    fn a_tag_moved_to_another_module_restarts_its_container() {
        let running = [container("c1", "a:latest", 'a')];
        let assigned = [container("c1", "a:latest", 'b')];
        assert_eq!(
            names(&restarted_containers(&running, &assigned)),
            [(0, "c1=a:latest".to_string())]
        );
    }

    #[test]
    fn another_name_for_the_same_module_restarts_its_container() {
        // Kubernetes compares the image as written: a new name is a new spec.
        let running = [container("c1", "a:v1", 'a')];
        let assigned = [container("c1", "a:stable", 'a')];
        assert_eq!(restarted_containers(&running, &assigned).len(), 1);
    }

    #[test]
    fn containers_are_matched_by_name_not_position() {
        let running = [container("c1", "a:v1", 'a'), container("c2", "b:v1", 'b')];
        let assigned = [container("c2", "b:v1", 'b'), container("c1", "a:v2", 'c')];
        assert_eq!(
            names(&restarted_containers(&running, &assigned)),
            [(0, "c1=a:v2".to_string())]
        );
    }

    #[test]
    fn every_changed_container_restarts() {
        let running = [container("c1", "a:v1", 'a'), container("c2", "b:v1", 'b')];
        let assigned = [container("c1", "a:v2", 'c'), container("c2", "b:v2", 'd')];
        assert_eq!(restarted_containers(&running, &assigned).len(), 2);
    }
}
