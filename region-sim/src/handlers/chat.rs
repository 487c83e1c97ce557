//! Chat: a line said where the avatar stands.

use schemas::Fact;
use schemas::command::Chat;
use schemas::fact::ChatSaid;

use crate::components::Key;
use crate::decide::{Decision, Facts};

impl Facts<'_> {
    pub(super) fn chat(&mut self, key: Key, me: schemas::EntityId, c: &Chat) -> Decision {
        let position = self.position(key);
        self.emit(Fact::ChatSaid(ChatSaid {
            entity: me,
            channel: c.channel(),
            text: c.text.clone(),
            position,
        }));
        Ok(())
    }
}
